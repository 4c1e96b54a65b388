//! `p2c`: the operator CLI. The same handlers as the Lambdas run underneath.

mod bench;
mod commands;
mod cost;
mod demo_events;
mod dry;
mod events;
mod idle;
mod latency;
mod local;
mod ops;
mod progress;
mod schedules;
mod sweep_bench;
mod trigger;

use clap::{Parser, Subcommand};
use p2c_sync::FlowName;

#[derive(Parser)]
#[command(
    name = "p2c",
    version,
    about = "Prospect-to-cash sync between Dynamics 365 Sales and F&O"
)]
struct Cli {
    /// Print one JSON document on stdout instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the emulated Sales, F&O and token endpoint (with demo data) until interrupted.
    Sandbox {
        /// First of three ports (Sales, F&O, token); 0 picks free ports.
        #[arg(long, default_value_t = 8700)]
        port: u16,
        /// Demo accounts to seed.
        #[arg(long, default_value_t = 25)]
        accounts: usize,
        /// Serve HTTPS with a throw-away CA (its PEM is written to a file named on start), for clients that
        /// refuse plain HTTP, such as Microsoft's Python Dataverse client.
        #[arg(long)]
        tls: bool,
        /// Send a webhook for every Sales change and the F&O business events to this events ingress (e.g.
        /// `p2c events serve`'s http://127.0.0.1:8710), with the key in P2C_EVENTS_SECRET.
        #[arg(long)]
        events_url: Option<String>,
    },
    /// Create the table and each flow's queue and DLQ if missing (safe to run twice).
    Init,
    /// One scheduled run of a flow, as its Lambda would do it.
    Run {
        #[arg(value_parser = FlowArg)]
        flow: FlowName,
        #[arg(long)]
        company: Option<String>,
        /// Ignore the watermark and re-read everything (no duplicates: links and keys are checked).
        #[arg(long)]
        full_resync: bool,
        /// Read and map as a real run would and print, per record, the fields that would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Process the flow's queue until it is empty, as the SQS trigger would.
    Drain {
        #[arg(value_parser = FlowArg)]
        flow: FlowName,
    },
    /// Move dead-lettered messages back to the flow's queue.
    Replay {
        #[arg(value_parser = FlowArg)]
        flow: FlowName,
        /// Only this company's messages (the others stay in the DLQ).
        #[arg(long)]
        company: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        /// Show what would move, move nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop a flow's schedules in the deployed stack (P2C_STACK), for every company or one, until `p2c resume`
    /// (a pause mark in the table keeps scheduled runs idle across deploys). Queued retries still run.
    Pause {
        #[arg(value_parser = FlowArg)]
        flow: FlowName,
        /// Only this company's schedule.
        #[arg(long)]
        company: Option<String>,
    },
    /// Restart a flow's schedules; the next run reads everything that changed since the last one.
    Resume {
        #[arg(value_parser = FlowArg)]
        flow: FlowName,
        /// Only this company's schedule.
        #[arg(long)]
        company: Option<String>,
    },
    /// Per flow and company: watermark and lag, last runs, queue and DLQ depth, lease holder.
    Status {
        /// Only this flow.
        #[arg(value_parser = FlowArg)]
        flow: Option<FlowName>,
    },
    /// One record's link (both systems' keys, hash, last sync) and its recent sync history.
    Links {
        /// Link entity: account, contact, product, quote, order, invoice.
        entity: String,
        /// The source key (for Sales → F&O flows the Sales id, for F&O → Sales the F&O key).
        key: String,
        /// Default: the first company in P2C_COMPANIES.
        #[arg(long)]
        company: Option<String>,
        /// The system the key belongs to.
        #[arg(long, value_enum, default_value_t = ops::System::Sales)]
        system: ops::System,
    },
    /// Full resync from scratch with progress; resumable after an interruption; creates no duplicates.
    Backfill {
        #[arg(value_parser = FlowArg)]
        flow: FlowName,
        #[arg(long)]
        company: Option<String>,
        /// Instead of syncing here, enqueue the records in segments of this many keys on the flow's queue, for
        /// the Lambdas to process in parallel (up to the event source's maximum concurrency).
        #[arg(long)]
        segments: Option<usize>,
    },
    /// Compare both systems for a flow: counts, missing records, field mismatches, orphan links.
    Reconcile {
        #[arg(value_parser = FlowArg)]
        flow: FlowName,
        #[arg(long)]
        company: Option<String>,
        /// Queue every missing or differing record for a resync.
        #[arg(long)]
        fix: bool,
    },
    /// Measure a flow against the sandbox (latency and service protection on) in p2c's mode and the naive mode.
    Bench {
        #[arg(long, value_enum, default_value_t = bench::Scenario::Changed)]
        scenario: bench::Scenario,
        #[arg(long, default_value_t = 10_000)]
        records: usize,
        /// Added to every sandbox response.
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
        /// Server execution time of each operation (a `$batch` runs its operations one after another); counts
        /// toward the services' execution-time limit.
        #[arg(long, default_value_t = 5)]
        op_ms: u64,
        /// Workers for the segmented initial load.
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// Skip the naive mode (it runs at one request per record: minutes for 10,000 records).
        #[arg(long)]
        no_naive: bool,
        /// Scenario latency: changes per second (the number of changes is --records).
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Scenario sweep: only this flow (orders-to-sales or products-to-sales); default both.
        #[arg(long)]
        flow: Option<FlowName>,
    },
    /// Sandbox + local DynamoDB/SQS + demo data; runs every flow and prints read/written/skipped/failed.
    Demo {
        #[arg(long, default_value_t = 25)]
        accounts: usize,
        /// After the initial load, let the documents travel by events (webhooks and business events through the
        /// local events ingress and queue triggers) instead of scheduled runs.
        #[arg(long)]
        events: bool,
    },
    /// Near real time: the Dataverse webhooks and F&O business events of the events function.
    Events {
        #[command(subcommand)]
        cmd: EventsCmd,
    },
}

#[derive(Subcommand)]
enum EventsCmd {
    /// Create or update (idempotently) p2c's webhook endpoint and the steps of every Sales table the enabled
    /// flows read; print the F&O business events to activate and the endpoint to create.
    Register {
        /// The events function's URL (the stack's EventsUrl output), e.g. https://<id>.lambda-url.<region>.on.aws
        #[arg(long)]
        url: String,
    },
    /// What is registered in Dataverse compared with what the enabled flows need (exit 1 when incomplete).
    Status {
        /// Checks the endpoint points here, and prints the F&O settings for it.
        #[arg(long)]
        url: Option<String>,
    },
    /// Serve the events ingress on a local port (queues found by P2C_QUEUE_PREFIX).
    Serve {
        #[arg(long, default_value_t = 8710)]
        port: u16,
    },
}

/// A flow argument: clap parses it as the `ValueEnum` [`FlowName`] (and lists the values in `--help`); an
/// unknown name is refused with the known ones.
#[derive(Clone)]
struct FlowArg;

impl clap::builder::TypedValueParser for FlowArg {
    type Value = FlowName;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<FlowName, clap::Error> {
        clap::builder::EnumValueParser::<FlowName>::new()
            .parse_ref(cmd, arg, value)
            .map_err(|_| {
                let msg = format!(
                    "unknown flow {:?}; known flows: {}\n",
                    value.to_string_lossy(),
                    FlowName::known()
                );
                clap::Error::raw(clap::error::ErrorKind::InvalidValue, msg).with_cmd(cmd)
            })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        use clap::ValueEnum;
        Some(Box::new(
            FlowName::value_variants()
                .iter()
                .filter_map(FlowName::to_possible_value),
        ))
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("P2C_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Sandbox {
            port,
            accounts,
            tls,
            events_url,
        } => commands::sandbox(port, accounts, tls, events_url.as_deref()).await,
        Cmd::Init => commands::init(cli.json).await,
        Cmd::Run {
            flow,
            company,
            full_resync,
            dry_run,
        } => commands::run(flow, company.as_deref(), full_resync, dry_run, cli.json).await,
        Cmd::Drain { flow } => commands::drain(flow, cli.json).await,
        Cmd::Replay {
            flow,
            company,
            limit,
            dry_run,
        } => commands::replay(flow, company.as_deref(), limit, dry_run, cli.json).await,
        Cmd::Pause { flow, company } => commands::pause_resume(flow, company.as_deref(), false, cli.json).await,
        Cmd::Resume { flow, company } => commands::pause_resume(flow, company.as_deref(), true, cli.json).await,
        Cmd::Status { flow } => commands::status(flow, cli.json).await,
        Cmd::Links {
            entity,
            key,
            company,
            system,
        } => commands::links(&entity, &key, company.as_deref(), system, cli.json).await,
        Cmd::Backfill {
            flow,
            company,
            segments,
        } => match segments {
            Some(n) => commands::backfill_segments(flow, company.as_deref(), n, cli.json).await,
            None => commands::backfill(flow, company.as_deref(), cli.json).await,
        },
        Cmd::Reconcile { flow, company, fix } => commands::reconcile(flow, company.as_deref(), fix, cli.json).await,
        Cmd::Bench {
            scenario,
            records,
            latency_ms,
            op_ms,
            workers,
            no_naive,
            rate,
            flow,
        } => {
            let args = bench::BenchArgs {
                scenario,
                records,
                latency_ms,
                op_ms,
                workers,
                naive: !no_naive,
                rate,
                flow,
            };
            commands::bench(args, cli.json).await
        }
        Cmd::Demo { accounts, events } => commands::demo(accounts, events, cli.json).await,
        Cmd::Events { cmd } => match cmd {
            EventsCmd::Register { url } => events::register(&url, cli.json).await,
            EventsCmd::Status { url } => events::status(url.as_deref(), cli.json).await,
            EventsCmd::Serve { port } => events::serve(port).await,
        },
    };
    if std::env::var_os("P2C_REPORT_PEAK_RSS").is_some() {
        // For `p2c bench`: the peak RSS of this process image (VmHWM), which, unlike getrusage after a
        // vfork+exec, does not include the parent's memory.
        if let Some(kb) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
        {
            eprintln!("p2c-peak-rss-kb {kb}");
        }
    }
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("p2c: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
