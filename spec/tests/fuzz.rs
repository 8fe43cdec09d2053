//! Property test: no input makes the parser or the validators panic.

use proptest::prelude::*;

const SEED: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: busybox:1.36\n        ports:\n        - containerPort: 8080\n          hostPort: 18080\n        resources: {limits: {memory: 64Mi, cpu: 500m}}\n        readinessProbe: {httpGet: {path: /, port: 8080}}\n      volumes:\n      - name: d\n        emptyDir: {}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]\n";

const LIST_SEED: &str = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n  data: {index.html: hi}\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p\n  spec:\n    containers:\n    - &c\n      name: a\n      image: busybox:1.36\n      ports: [{containerPort: 80, hostPort: 8080}]\n    - <<: *c\n      name: b\n      ports: [{containerPort: 81}]\n    volumes:\n    - {name: d, configMap: {name: c}}\n- apiVersion: v1\n  kind: PersistentVolumeClaim\n  metadata: {name: v}\n  spec: {resources: {requests: {storage: 1Gi}}}\n";

fn check(text: &str) {
    let p = berth_spec::parse_str("fuzz.yaml", text);
    let _ = berth_spec::validate_set(&p.objects);
    for d in &p.diagnostics {
        let _ = d.to_string();
    }
}

proptest! {
    // 400 cases each by default; PROPTEST_CASES=N for a longer run
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
    ))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        check(&s);
    }

    #[test]
    fn yamlish_text_never_panics(s in "([a-zA-Z:\\-\\[\\]{}#&*|>'\" ,0-9]{0,20}\n){0,30}") {
        check(&s);
    }

    #[test]
    fn mutated_manifests_never_panic(pos in 0usize..SEED.len(), len in 0usize..40, ins in "[ -~\n]{0,12}") {
        let mut s = SEED.to_string();
        let end = (pos + len).min(s.len());
        if s.is_char_boundary(pos) && s.is_char_boundary(end) {
            s.replace_range(pos..end, &ins);
        }
        check(&s);
    }

    #[test]
    fn mutated_lists_never_panic(pos in 0usize..LIST_SEED.len(), len in 0usize..40, ins in "[ -~\n]{0,12}") {
        let mut s = LIST_SEED.to_string();
        let end = (pos + len).min(s.len());
        if s.is_char_boundary(pos) && s.is_char_boundary(end) {
            s.replace_range(pos..end, &ins);
        }
        check(&s);
    }
}

#[test]
fn seeds_are_clean() {
    for seed in [SEED, LIST_SEED] {
        let p = berth_spec::parse_str("seed.yaml", seed);
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        assert!(berth_spec::validate_set(&p.objects).is_empty());
    }
}

#[test]
fn hostile_yaml_is_an_error_not_a_crash() {
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("b{}", i - 1)
        };
        bomb.push_str(&format!("b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    for text in [
        deep,
        bomb,
        "kind: List\napiVersion: v1\nitems: [[[]]]\n".to_string(),
    ] {
        let p = berth_spec::parse_str("h.yaml", &text);
        assert!(p.has_errors(), "{text:.60}");
    }
}
