//! Progress of a long run on stderr: a bar that redraws on a terminal, plain lines otherwise (logs, CI).

use std::{
    io::{IsTerminal, Write},
    sync::{Arc, Mutex},
    time::Instant,
};

use p2c_sync::{RunReport, run::Progress};

/// A progress callback for `run_flow`. Stops the run when P2C_STOP_AFTER records are done (used to test
/// resumption the way an operator's Ctrl-C would leave it).
pub fn printer(flow: &str, company: &str, total: Option<u64>) -> Progress {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let label = format!("{flow} {company}");
    let stop_after: Option<u64> = std::env::var("P2C_STOP_AFTER").ok().and_then(|v| v.parse().ok());
    let last_line = Arc::new(Mutex::new(0u64));
    Arc::new(move |r: &RunReport| {
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let rate = r.read as f64 / secs;
        let (bar, eta) = match total {
            Some(t) if t > 0 => {
                let done = r.read.min(t);
                let filled = (done * 30 / t) as usize;
                let left = (t - done) as f64 / rate.max(0.001);
                (
                    format!("[{}{}] {done}/{t} ", "=".repeat(filled), " ".repeat(30 - filled)),
                    format!(", ETA {left:.0}s"),
                )
            }
            _ => (String::new(), String::new()),
        };
        let text = format!(
            "{label}: {bar}{} records ({} written, {} skipped, {} failed), {:.0}/s, {:.0}s{eta}",
            r.read, r.written, r.skipped, r.failed, rate, secs
        );
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[2K{text}");
        } else {
            let mut last = last_line.lock().unwrap_or_else(|p| p.into_inner());
            if r.read != *last {
                let _ = writeln!(err, "progress {text}");
                *last = r.read;
            }
        }
        let _ = err.flush();
        stop_after.is_none_or(|n| r.read < n)
    })
}

/// Ends the terminal line the bar was drawing on.
pub fn finish() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}
