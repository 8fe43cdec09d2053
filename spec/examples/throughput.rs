//! Parse+validate throughput: 1,000 manifests (a realistic mix) through
//! `parse_str` and one `validate_set` over all of them.
//!
//! `cargo run --release -p berth-spec --example throughput [N]`

use std::time::Instant;

fn manifest(i: usize) -> String {
    match i % 4 {
        0 => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\n  labels: {{app: web-{i}}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: web-{i}}}\n  template:\n    metadata:\n      labels: {{app: web-{i}}}\n    spec:\n      containers:\n      - name: httpd\n        image: berth.local/busybox:1.36\n        command: [httpd, -f, -p, \"8080\"]\n        ports:\n        - {{name: http, containerPort: 8080}}\n        readinessProbe:\n          httpGet: {{path: /, port: http}}\n        resources:\n          requests: {{cpu: 50m, memory: 16Mi}}\n          limits: {{cpu: 250m, memory: 32Mi}}\n        volumeMounts:\n        - {{name: content, mountPath: /www}}\n      volumes:\n      - name: content\n        configMap: {{name: content-{i}}}\n"
        ),
        1 => format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-{i}\nspec:\n  selector: {{app: web-{i}}}\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n"
        ),
        2 => format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: content-{}\ndata:\n  index.html: |\n    <h1>hello {i}</h1>\n",
            i - 2
        ),
        _ => format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: worker-{i}\nspec:\n  containers:\n  - name: w\n    image: berth.local/busybox:1.36\n    command: [sh, -c, \"sleep 3600\"]\n    env:\n    - {{name: A, value: b}}\n    volumeMounts:\n    - {{name: data, mountPath: /data}}\n  volumes:\n  - name: data\n    emptyDir: {{}}\n"
        ),
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let files: Vec<(String, String)> = (0..n)
        .map(|i| (format!("m/{i}.yaml"), manifest(i)))
        .collect();
    let bytes: usize = files.iter().map(|f| f.1.len()).sum();
    let mut best = f64::MAX;
    let mut diags = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let mut objects = Vec::with_capacity(n);
        diags = 0;
        for (name, text) in &files {
            let p = berth_spec::parse_str(name, text);
            diags += p.diagnostics.len();
            objects.extend(p.objects);
        }
        diags += berth_spec::validate_set(&objects).len();
        assert_eq!(objects.len(), n);
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{n} manifests ({} KiB) parsed+validated in {:.1} ms (best of 5): {:.0} manifests/s, {diags} diagnostics",
        bytes / 1024,
        best * 1000.0,
        n as f64 / best
    );
}
