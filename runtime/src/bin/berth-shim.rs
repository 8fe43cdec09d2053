//! `berth-shim`: berth's per-container supervisor. Started by the berth agent,
//! never by users. See `berth_runtime::shim`.

use std::time::Duration;

fn main() {
    // libcontainer's own diagnostics go to the shim's log (its stderr)
    let filter = std::env::var("BERTH_SHIM_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(false)
        .try_init();
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("run") if args.len() == 3 => {
            berth_runtime::shim::launch(&berth_runtime::shim::dir_arg(&args[2]))
        }
        Some("supervise") if args.len() == 8 => berth_runtime::shim::supervise_main(&args[2..]),
        Some("pidns") if args.len() == 3 => {
            berth_runtime::pid_ns::holder_main(&berth_runtime::shim::dir_arg(&args[2]))
        }
        Some("pid1") if args.len() == 2 => berth_runtime::pid_ns::init_main(),
        Some("serve") if args.len() == 3 => {
            berth_runtime::shim::serve_main(&berth_runtime::shim::dir_arg(&args[2]))
        }
        Some("exec") if args.len() > 5 && args[4] == "--" => {
            let timeout = Duration::from_millis(args[3].parse().unwrap_or(1000));
            berth_runtime::shim::exec_main(
                &berth_runtime::shim::dir_arg(&args[2]),
                timeout,
                args[5..].to_vec(),
            )
        }
        _ => {
            eprintln!(
                "berth-shim is started by the berth agent: berth-shim run DIR | exec DIR TIMEOUT_MS -- ARGV"
            );
            64
        }
    };
    std::process::exit(code);
}
