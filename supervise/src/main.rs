//! `berth-supervise DIR PID OUT_FD ERR_FD STARTED_NS OOM_BEFORE`: the
//! resident per-container supervisor that `berth-shim serve` execs once the
//! container runs. Kept small (one thread, a poll loop; it links none of
//! libcontainer, tokio or tracing). See `berth_supervise::supervise`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(berth_supervise::supervise::main(&args));
}
