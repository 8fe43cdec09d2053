//! The status page in a real browser: Debian's Chromium (headless, driven by
//! Playwright in `tests/browser/`) against the real agent running the
//! example manifests, with an API token (the browser sends it as Basic
//! credentials). The page must load with no console error and no request
//! outside the agent, show the pods grouped by Deployment, the revision
//! panel, Service endpoints, volumes, logs and usage sparklines, follow a
//! manifest change live, and survive a kill -9 of the agent. Screenshots are
//! kept in `<target>/e2e-artifacts/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_e2e::{Agent, AgentOpts, preconditions, tail, which, workspace_root};

const TOKEN: &str = "page-e2e-token-1f3a";
/// Everything the browser does, restart included.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(480);

fn required() -> bool {
    std::env::var("BERTH_E2E_REQUIRED").is_ok_and(|v| v == "1")
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}: {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 10)
        );
    }
    Ok(())
}

/// Chromium, Node and playwright-core, installed when missing (never a
/// downloaded browser: Playwright drives Debian's /usr/bin/chromium).
fn browser_tools() -> Result<PathBuf> {
    let mut pkgs = Vec::new();
    if !Path::new("/usr/bin/chromium").exists() {
        pkgs.push("chromium");
    }
    if which("node").is_none() || which("npm").is_none() {
        pkgs.extend(["nodejs", "npm"]);
    }
    if !pkgs.is_empty() {
        eprintln!("status_page: installing {pkgs:?}");
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let dir = workspace_root().join("tests/browser");
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))?;
    }
    Ok(dir)
}

/// GET with the token; (status, body).
fn get_auth(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut rest = String::new();
    let _ = r.read_to_string(&mut rest);
    Ok((code, rest))
}

/// The example manifests, with a NodePort of this test's own.
fn example_manifests(a: &Agent) -> Result<()> {
    let dir = workspace_root().join("examples/manifests");
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let text = std::fs::read_to_string(&p)?.replace("nodePort: 30080", "nodePort: 30190");
            a.write_manifest(&p.file_name().unwrap().to_string_lossy(), &text)?;
        }
    }
    Ok(())
}

#[test]
fn status_page_in_a_real_browser() -> Result<()> {
    if !preconditions("status_page_in_a_real_browser") {
        return Ok(());
    }
    let browser_dir = match browser_tools() {
        Ok(d) => d,
        Err(e) if !required() => {
            eprintln!("status_page_in_a_real_browser: skipped: {e:#}");
            return Ok(());
        }
        Err(e) => panic!("status_page_in_a_real_browser: {e:#} (BERTH_E2E_REQUIRED=1)"),
    };
    let mut a = Agent::new(AgentOpts {
        instance: "btpage1",
        net: 90,
        port: 17190,
        with_image: true,
    })?;
    let token_file = a.dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
    a.extra_args = vec!["--api-token-file".into(), token_file.display().to_string()];
    example_manifests(&a)?;
    a.start()?;

    // the token rule: no token, no page; a browser is asked for it
    let (code, _) = a.get("/")?;
    assert_eq!(code, 401, "the page needs the token");
    let (code, body) = get_auth(a.port, "/")?;
    assert_eq!(code, 200);
    assert!(body.contains("/ui/app.js"), "{body}");

    let artifacts = berth_e2e::berth_bin()
        .parent()
        .and_then(Path::parent)
        .context("target dir")?
        .join("e2e-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let flag = a.dir.join("restart.flag");
    let out_path = a.dir.join("browser.log");
    let mut child = Command::new("node")
        .arg(browser_dir.join("status-page.mjs"))
        .current_dir(&browser_dir)
        .env("BERTH_URL", format!("http://127.0.0.1:{}", a.port))
        .env("BERTH_TOKEN", TOKEN)
        .env("BERTH_MANIFESTS", &a.manifests)
        .env("BERTH_ARTIFACTS", &artifacts)
        .env("BERTH_RESTART_FLAG", &flag)
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting node")?;
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if flag.exists() {
            // the browser asks: kill -9 the agent and start it again
            a.kill9();
            a.start()?;
            std::fs::remove_file(&flag)?;
        }
        if t0.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!("{out}");
    match status {
        Some(st) if st.success() => {}
        Some(st) => bail!(
            "the browser checks failed ({st}):\n{out}\nagent log tail:\n{}",
            tail(&a.log(), 40)
        ),
        None => bail!("the browser checks took longer than {BROWSER_TIMEOUT:?}:\n{out}"),
    }
    let result: serde_json::Value = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("no RESULT line")
        .and_then(|l| Ok(serde_json::from_str(l)?))?;
    println!(
        "status page: {} bytes (html+js+css), first contentful paint {} ms, first render with data {} ms, {} sparklines; screenshots in {}",
        result["weightBytes"],
        result["firstContentfulPaintMs"],
        result["firstDataMs"],
        result["sparklines"],
        artifacts.display()
    );
    let weight = result["weightBytes"].as_u64().unwrap_or(u64::MAX);
    assert!(weight < 64 * 1024, "the page weighs {weight} bytes");
    for shot in ["status-page.png", "status-page-phone.png"] {
        let len = std::fs::metadata(artifacts.join(shot))?.len();
        assert!(len > 10_000, "{shot} is {len} bytes");
    }

    // clean up through the manifests, as a user would
    for e in std::fs::read_dir(&a.manifests)?.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    a.write_manifest("empty.yaml", "# nothing\n")?;
    let t0 = Instant::now();
    loop {
        let (code, body) = get_auth(a.port, "/api/v1/pods")?;
        if code == 200 && body.contains("\"items\":[]") {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("pods not gone after 60 s: {body}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    a.stop();
    Ok(())
}
