//! `kugetsu dashboard [--listen ADDR:PORT]`: serves the page and the JSON API over this state
//! directory until stopped, and prints the URL to open (with the token, for the first load).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Where the dashboard listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";

/// Arguments of `dashboard`.
#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Address and port to listen on (port 0: any free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Allow an address other than loopback: anyone who can reach it and has the token can
    /// see and steer your agents (the page is plain HTTP; put TLS in front of it).
    #[arg(long)]
    pub allow_remote: bool,
    /// A name the dashboard is reached by besides its address, such as the tailnet name
    /// `tailscale serve` publishes it under (requests naming any other host are refused).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
}

/// Serves the dashboard until the process is stopped.
pub fn cmd_dashboard(ui: &mut Ui, ctx: &Ctx, args: &DashboardArgs) -> Result<(), CliError> {
    if !args.listen.ip().is_loopback() {
        if !args.allow_remote {
            return Err(CliError::usage(format!(
                "--listen {} is not a loopback address",
                args.listen
            ))
            .with_hint("pass --allow-remote to serve it beyond this machine"));
        }
        writeln!(
            ui.stderr(),
            "warning: serving on {} beyond this machine, over plain HTTP: anyone who can reach \
             it and holds the token can see and steer your agents",
            args.listen
        )?;
    }
    ctx.state.ensure()?;
    let config = ctx.config()?;
    // A shared queue changes in its database: the watcher asks it for its counts.
    let remote: Option<crate::dashboard::events::Remote> = match config.queue_url {
        None => None,
        Some(_) => {
            let queue = crate::queue_backend::queue(ctx, &config)?;
            Some(Box::new(move || queue.stats().ok().and_then(|s| serde_json::to_string(&s).ok())))
        }
    };
    let token = crate::dashboard::auth::load_or_create(&ctx.state)?;
    let mut json_ctx = ctx.clone();
    json_ctx.json = true;
    // Outside the runtime: a shared queue's client blocks, and the watcher's first look must
    // be done before anyone is told the URL.
    let changes = crate::dashboard::events::watch_state(&ctx.state, remote);
    let runtime = crate::dashboard::server::runtime()?;
    runtime.block_on(async {
        let listener = crate::dashboard::server::bind(args.listen).await?;
        let addr = listener.local_addr()?;
        let app = crate::dashboard::App {
            ctx: Arc::new(json_ctx),
            token: token.as_str().into(),
            reach: Arc::new(crate::dashboard::auth::Reach::new(addr, &args.hosts)),
            changes,
        };
        let url = format!("http://{addr}/?token={token}");
        if ctx.json {
            ctx.print_json(
                ui.stdout(),
                &serde_json::json!({"listen": addr.to_string(), "url": url}),
            )?;
        } else {
            writeln!(ui.stdout(), "kugetsu dashboard on http://{addr}/")?;
            writeln!(ui.stdout(), "open: {url}")?;
        }
        ui.stdout().flush()?;
        crate::dashboard::server::serve(listener, crate::dashboard::routes::router(app)).await;
        Ok(())
    })
}
