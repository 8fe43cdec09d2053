use std::collections::HashMap;

use super::*;

fn host<'a>(
    env: &'a HashMap<&'static str, &'static str>,
    files: &'a HashMap<&'static str, &'static str>,
) -> Host<'a> {
    Host {
        env: Box::leak(Box::new(move |k: &str| env.get(k).map(|s| s.to_string()))),
        read_file: Box::leak(Box::new(move |p: &str| {
            files
                .get(p)
                .map(|s| s.to_string())
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
        })),
        hostname: &|| Some("edge1".to_string()),
    }
}

fn cli(args: &[&str]) -> AgentArgs {
    let mut v = vec!["berth"];
    v.extend_from_slice(args);
    parse_cli(v).expect("parse").agent
}

#[test]
fn defaults_follow_design() {
    let (env, files) = (HashMap::new(), HashMap::new());
    let c = resolve(&cli(&["--manifests", "/m"]), &host(&env, &files)).unwrap();
    assert_eq!(c.instance, "berth");
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/berth"));
    assert_eq!(c.run_dir, PathBuf::from("/run/berth"));
    assert_eq!(c.image_dir, PathBuf::from("/var/lib/berth/images/import"));
    assert_eq!(c.listen.to_string(), "127.0.0.1:7070");
    assert_eq!(c.pod_cidr, "10.44.0.0/16");
    assert_eq!(c.service_cidr, "10.45.0.0/16");
    assert_eq!(c.node_name, "edge1");
    assert_eq!(c.node_labels["kubernetes.io/hostname"], "edge1");
    assert!(c.node_labels.contains_key("kubernetes.io/arch"));
    assert_eq!(c.manifests_resync, Duration::from_secs(60));
    assert!(c.git.is_none());
}

#[test]
fn flags_beat_env_beat_file() {
    let env = HashMap::from([
        ("BERTH_INSTANCE", "fromenv"),
        ("BERTH_NODE_NAME", "envnode"),
        ("BERTH_CONFIG", "/c.yaml"),
    ]);
    let files = HashMap::from([(
        "/c.yaml",
        "instance: fromfile\nnode-name: filenode\nlisten: 127.0.0.1:9000\nmanifests: [/a, /b]\nnode-labels: {zone: x}\n",
    )]);
    let h = host(&env, &files);
    let c = resolve(&cli(&["--instance", "fromflag"]), &h).unwrap();
    assert_eq!(c.instance, "fromflag", "flag wins over env and file");
    assert_eq!(c.node_name, "envnode", "env wins over file");
    assert_eq!(c.listen.port(), 9000, "file fills what nobody else gave");
    assert_eq!(c.manifests, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
    assert_eq!(c.node_labels["zone"], "x");
    // repeatable from flags replace the file's list entirely
    let c = resolve(&cli(&["--manifests", "/z"]), &h).unwrap();
    assert_eq!(c.manifests, vec![PathBuf::from("/z")]);
}

#[test]
fn env_lists_are_comma_separated() {
    let env = HashMap::from([
        ("BERTH_MANIFESTS", "/a, /b"),
        ("BERTH_GIT", "file:///r"),
        ("BERTH_GIT_PATH", "common,hosts/{node}"),
    ]);
    let files = HashMap::new();
    let c = resolve(&cli(&[]), &host(&env, &files)).unwrap();
    assert_eq!(c.manifests.len(), 2);
    let g = c.git.unwrap();
    assert_eq!(
        g.paths,
        vec!["common".to_string(), "hosts/edge1".to_string()]
    );
    assert_eq!(g.branch, "main");
    assert_eq!(g.interval, Duration::from_secs(30));
}

#[test]
fn unknown_file_keys_are_refused() {
    let env = HashMap::new();
    let files = HashMap::from([("/c.yaml", "manifests: [/a]\nlistn: 1.2.3.4:1\n")]);
    let err = resolve(&cli(&["--config", "/c.yaml"]), &host(&env, &files)).unwrap_err();
    assert!(matches!(err, ConfigError::ParseFile { .. }), "{err}");
    assert!(err.to_string().contains("listn"), "{err}");
}

#[test]
fn validation_errors_name_key_and_value() {
    let (env, files) = (HashMap::new(), HashMap::new());
    let h = host(&env, &files);
    assert!(matches!(resolve(&cli(&[]), &h), Err(ConfigError::NoSource)));
    let e = resolve(
        &cli(&["--manifests", "/m", "--pod-cidr", "10.0.0.0/40"]),
        &h,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--pod-cidr") && e.contains("10.0.0.0/40"), "{e}");
    let e = resolve(
        &cli(&["--manifests", "/m", "--service-cidr", "nonsense"]),
        &h,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--service-cidr"), "{e}");
    let e = resolve(
        &cli(&["--manifests", "/m", "--instance", "much-too-long"]),
        &h,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--instance"), "{e}");
    let e = resolve(&cli(&["--manifests", "/m", "--instance", "Bad_1"]), &h)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[a-z0-9-]"), "{e}");
    let e = resolve(&cli(&["--manifests", "/m", "--git-interval", "soon"]), &h)
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs --git"), "{e}");
    let e = resolve(&cli(&["--git", "file:///r", "--git-interval", "soon"]), &h)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--git-interval") && e.contains("soon"), "{e}");
    let e = resolve(
        &cli(&["--manifests", "/m", "--registry-mirror", "docker.io"]),
        &h,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--registry-mirror"), "{e}");
    let e = resolve(&cli(&["--manifests", "/m", "--node-labels", "novalue"]), &h)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--node-labels"), "{e}");
}

#[test]
fn non_loopback_listen_needs_a_token() {
    let env = HashMap::new();
    let files = HashMap::from([("/tok", "s3cret\n"), ("/empty", "  \n")]);
    let h = host(&env, &files);
    let err = resolve(&cli(&["--manifests", "/m", "--listen", "0.0.0.0:7070"]), &h).unwrap_err();
    assert!(matches!(err, ConfigError::TokenRequired(_)), "{err}");
    assert!(err.to_string().contains("--api-token-file"));
    let c = resolve(
        &cli(&[
            "--manifests",
            "/m",
            "--listen",
            "0.0.0.0:7070",
            "--api-token-file",
            "/tok",
        ]),
        &h,
    )
    .unwrap();
    assert_eq!(c.api_token.as_deref(), Some("s3cret"));
    let err = resolve(
        &cli(&["--manifests", "/m", "--api-token-file", "/empty"]),
        &h,
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::EmptySecret { .. }));
    let ok = resolve(&cli(&["--manifests", "/m", "--listen", "[::1]:7070"]), &h).unwrap();
    assert!(ok.api_token.is_none());
}

#[test]
fn clap_never_reads_the_environment() {
    // cli_command strips env attributes: the only env source is the lookup fn.
    assert!(cli_command().get_arguments().all(|a| a.get_env().is_none()));
    assert!(
        Cli::command()
            .get_arguments()
            .filter(|a| a.get_id() != "help" && a.get_id() != "version")
            .all(|a| a.get_env().is_some())
    );
}

#[test]
fn subcommands_parse() {
    let c = parse_cli(["berth", "validate", "a", "b"]).unwrap();
    assert!(
        matches!(c.command, Some(Command::Validate { ref paths, policy: None }) if paths.len() == 2)
    );
    let c = parse_cli(["berth", "validate", "--policy", "p.yaml", "a"]).unwrap();
    assert!(matches!(
        c.command,
        Some(Command::Validate { policy: Some(ref p), .. }) if p == std::path::Path::new("p.yaml")
    ));
    assert!(matches!(
        parse_cli(["berth", "schema"]).unwrap().command,
        Some(Command::Schema)
    ));
    assert!(parse_cli(["berth", "validate"]).is_err());
}

const POLICY: &str = "apiVersion: berth.dev/v1alpha1\nkind: Policy\nspec:\n  hostNetwork: true\n";

#[test]
fn policy_from_flag_env_or_file() {
    let files = HashMap::from([
        ("/p.yaml", POLICY),
        ("/c.yaml", "manifests: [/m]\npolicy: /p.yaml\n"),
    ]);
    let none = HashMap::new();
    let c = resolve(&cli(&["--manifests", "/m"]), &host(&none, &files)).unwrap();
    assert!(c.policy.is_none(), "no policy unless one is given");
    let c = resolve(
        &cli(&["--manifests", "/m", "--policy", "/p.yaml"]),
        &host(&none, &files),
    )
    .unwrap();
    let p = c.policy.unwrap();
    assert_eq!(p.path, PathBuf::from("/p.yaml"));
    assert!(p.policy.host_network && !p.policy.privileged);
    let env = HashMap::from([("BERTH_POLICY", "/p.yaml")]);
    let c = resolve(&cli(&["--manifests", "/m"]), &host(&env, &files)).unwrap();
    assert!(c.policy.is_some());
    let c = resolve(&cli(&["--config", "/c.yaml"]), &host(&none, &files)).unwrap();
    assert!(c.policy.is_some());
}

#[test]
fn a_policy_that_cannot_be_used_stops_the_agent() {
    let files = HashMap::from([
        ("/empty.yaml", "\n"),
        (
            "/typo.yaml",
            "apiVersion: berth.dev/v1alpha1\nkind: Policy\nspec:\n  hostNetwrk: true\n",
        ),
        (
            "/wrong.yaml",
            "apiVersion: berth.dev/v1alpha1\nkind: Policy\nspec:\n  allowedHostPaths: [{pathPrefix: etc}]\n",
        ),
    ]);
    let none = HashMap::new();
    let err = |args: &[&str], env: &HashMap<&'static str, &'static str>| {
        let e = resolve(&cli(args), &host(env, &files)).unwrap_err();
        crate::sources::git::error_chain(&e)
    };
    let m = err(&["--manifests", "/m", "--policy", "/missing.yaml"], &none);
    assert_eq!(m, "reading policy file /missing.yaml: no such file");
    let m = err(&["--manifests", "/m", "--policy", "/empty.yaml"], &none);
    assert!(m.starts_with("policy file /empty.yaml is empty"), "{m}");
    let m = err(&["--manifests", "/m", "--policy", "/typo.yaml"], &none);
    assert!(
        m.starts_with("policy file /typo.yaml: ") && m.contains("hostNetwrk"),
        "{m}"
    );
    let m = err(&["--manifests", "/m", "--policy", "/wrong.yaml"], &none);
    assert!(m.contains("spec.allowedHostPaths[0].pathPrefix"), "{m}");
    // set but empty is not "no policy"
    let m = err(&["--manifests", "/m", "--policy", ""], &none);
    assert!(m.contains("--policy"), "{m}");
    let env = HashMap::from([("BERTH_POLICY", "")]);
    let m = err(&["--manifests", "/m"], &env);
    assert!(m.contains("--policy"), "{m}");
}
