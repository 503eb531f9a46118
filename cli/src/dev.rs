//! `chorus dev`: the four Lambda functions' jobs in one process. The HTTP API serves
//! intake and provider callbacks, a worker loop drains the steps queue, a notifier loop the
//! notifications queue and a sweep runs every half minute, all over the memory adapters.
//! Models: the offline `local` provider, plus each hosted provider whose key is in the
//! environment (`chorus mock-providers` stands in for them all): no AWS, no keys needed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus::adapters::{MemoryQueue, MemoryRateLimiter, MemoryTenantDirectory};
use chorus::domain::{InvalidId, RateLimit, TenantId};
use chorus::engine::{Engine, EngineError, SweepReport, TenantQuota, parse_limit};
use chorus::http::{AppState, app, callbacks_routes};
use chorus::ports::{NotificationMessage, Queue, SigningSecrets, StepMessage, SystemClock, Tenant, generate_api_key};
use chorus::startup::{CatalogError, CredentialLoading, Embedded, EmbeddedOptions, router_from_env};
use chorus::webhooks::{ClientBuildError, DestinationPolicy, HttpWebhookSender, WebhookSecret};
use secrecy::ExposeSecret;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use self::keys::{ApiKey, ApiKeysError, parse_api_key};
use crate::shutdown_signal;

mod keys;

/// Steps (and notifications) handled at once. Local models are instant; the bound matters
/// for the day `dev` routes to real providers with rate limits.
const DEFAULT_CONCURRENCY: u16 = 8;
/// How often a message whose handler failed is tried before it is dropped, like SQS's
/// `maxReceiveCount` before a message moves to the dead-letter queue.
const MAX_RECEIVES: u32 = 5;
/// First re-delivery delay after a failure; doubled for every further failure.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
/// In-flight steps and notifications get this long to finish after Ctrl-C.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often expired waits (approvals, provider jobs) are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// The tenant that owns the generated API key.
const DEV_TENANT: &str = "dev";
const EXAMPLE: &str = "examples/draft-summarize-sentiment.json";

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Address the HTTP API listens on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "CHORUS_ADDR")]
    addr: SocketAddr,

    /// API requests each tenant may make: PER_MINUTE/BURST.
    #[arg(long, value_name = "PER_MINUTE/BURST", env = "CHORUS_TENANT_REQUEST_LIMIT", default_value = "600/100", value_parser = parse_limit)]
    tenant_requests: RateLimit,

    /// Steps each tenant may start: PER_MINUTE/BURST. A tenant over it waits; others do not.
    #[arg(long, value_name = "PER_MINUTE/BURST", env = "CHORUS_TENANT_STEP_LIMIT", default_value = "1200/200", value_parser = parse_limit)]
    tenant_steps: RateLimit,

    /// An API key for a tenant (repeatable). Keys may also come from the environment,
    /// `CHORUS_API_KEYS=TENANT:KEY,TENANT:KEY`, and from --api-keys-file, which keep them out
    /// of the command line (`ps` shows it to every user). Without any key from any of them,
    /// one for tenant `dev` is generated and printed.
    #[arg(long = "api-key", value_name = "TENANT:KEY", value_parser = parse_api_key)]
    api_keys: Vec<ApiKey>,

    /// A file of API keys: one `TENANT:KEY` per line; blank lines and `#` comments are skipped.
    #[arg(long, value_name = "PATH", env = "CHORUS_API_KEYS_FILE")]
    api_keys_file: Option<PathBuf>,

    /// The Standard Webhooks secret notifications are signed with (every tenant shares it
    /// here). Generated and printed when absent.
    #[arg(
        long,
        value_name = "whsec_...",
        env = "CHORUS_WEBHOOK_SECRET",
        hide_env_values = true,
        value_parser = WebhookSecret::parse
    )]
    webhook_secret: Option<WebhookSecret>,

    /// A second secret notifications are also signed with, as during a key rotation: each
    /// notification then carries one signature per secret (newest, then this one), so a
    /// receiver still checking with this one keeps accepting them.
    #[arg(
        long,
        value_name = "whsec_...",
        env = "CHORUS_PREVIOUS_WEBHOOK_SECRET",
        hide_env_values = true,
        value_parser = WebhookSecret::parse
    )]
    previous_webhook_secret: Option<WebhookSecret>,

    /// Also allow notification URLs on private networks (10/8, 172.16/12, 192.168/16, ...).
    /// Loopback is always allowed in dev; link-local and metadata addresses never are.
    #[arg(long)]
    allow_private_notify_urls: bool,

    /// Steps, and separately notifications, processed at the same time.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
}

/// Why `chorus dev` could not start or keep running.
#[derive(Debug, Error)]
pub enum DevError {
    #[error("the built-in tenant name is invalid")]
    Tenant(#[from] InvalidId),
    #[error(transparent)]
    ApiKeys(#[from] ApiKeysError),
    #[error(transparent)]
    WebhookClient(#[from] ClientBuildError),
    #[error(transparent)]
    Providers(#[from] CatalogError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server stopped")]
    Serve(#[source] std::io::Error),
}

/// Starts everything, prints how to use it, and runs until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> Result<ExitCode, DevError> {
    let concurrency = usize::from(args.concurrency);
    let given = api_keys(&args, std::env::var(keys::ENV_VARIABLE).ok().as_deref())?;
    let secret_generated = args.webhook_secret.is_none();
    let secret = args.webhook_secret.unwrap_or_else(WebhookSecret::generate);
    let (keys, generated) = if given.is_empty() {
        let key = ApiKey { tenant: TenantId::parse(DEV_TENANT)?, key: generate_api_key() };
        (vec![key], true)
    } else {
        (given, false)
    };

    let policy =
        DestinationPolicy { allow_private: args.allow_private_notify_urls, ..DestinationPolicy::local_development() };
    let secrets =
        SigningSecrets::with_previous(secret.to_whsec(), args.previous_webhook_secret.as_ref().map(|s| s.to_whsec()));
    let tenants = Arc::new(keys.iter().fold(MemoryTenantDirectory::new(), |tenants, api_key| {
        tenants.with_key(Tenant::new(api_key.tenant.clone()), secrets.clone(), &api_key.key)
    }));
    let clock = Arc::new(SystemClock);
    let lookup = |name: &str| std::env::var(name).ok();
    // No secret store in dev: credentials are values in the environment.
    let limiter = Arc::new(MemoryRateLimiter::new(clock.clone()));
    let quota =
        TenantQuota { requests: args.tenant_requests, steps: args.tenant_steps, ..TenantQuota::new(limiter.clone()) };
    let router = router_from_env(&lookup, limiter, None, CredentialLoading::AtStart).await?;
    let mut providers: Vec<String> = router.models().into_iter().map(|m| m.provider).collect();
    providers.dedup();

    // Bound before the engine is built: providers' job callbacks need the address.
    let listener = TcpListener::bind(args.addr).await.map_err(|source| DevError::Bind { addr: args.addr, source })?;
    let addr = listener.local_addr().map_err(|source| DevError::Bind { addr: args.addr, source })?;
    let embedded = Embedded::new();
    let engine = Arc::new(Engine::new(embedded.engine_parts(EmbeddedOptions {
        router: Arc::new(router),
        clock: clock.clone(),
        destinations: policy,
        public_url: Some(format!("http://{addr}")),
        quota: Some(quota),
    })));
    let notifier = Arc::new(embedded.notifier(tenants.clone(), Arc::new(HttpWebhookSender::new(policy)?), clock));
    let Embedded { steps, step_messages, notifications, notification_messages, .. } = embedded;

    let rotating = secrets.previous().is_some();
    print_banner(addr, &keys, generated, &secret, secret_generated, rotating, &providers);

    let (stop, stopped) = watch::channel(false);
    let worker = {
        let engine = engine.clone();
        let dead_letters = engine.clone();
        let consumer = Consumer {
            name: "worker",
            handle: move |message: StepMessage| {
                let engine = engine.clone();
                async move { engine.execute_step(&message).await }
            },
            // Like the notifier on the steps DLQ in AWS: the step, and so the run, fails.
            dead_letter: move |message: StepMessage| {
                let engine = dead_letters.clone();
                async move { engine.fail_undeliverable(&message).await }
            },
        };
        tokio::spawn(drain(consumer, step_messages, steps, concurrency, stopped.clone()))
    };
    let notifier_loop = {
        let consumer = Consumer {
            name: "notifier",
            handle: move |message: NotificationMessage| {
                let notifier = notifier.clone();
                async move { notifier.deliver(&message).await }
            },
            // A notification that cannot even be attempted is only logged, as a DLQ would keep it.
            dead_letter: |_| async { Ok(()) },
        };
        tokio::spawn(drain(consumer, notification_messages, notifications, concurrency, stopped))
    };

    // One line per request: in dev the person watching the log is the one sending them. The
    // path only, a callback's token (a credential) masked; never headers (API keys).
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &axum::http::Request<axum::body::Body>| {
            tracing::info_span!("request", method = %request.method(), path = %loggable_path(request.uri().path()))
        })
        .on_response(DefaultOnResponse::new().level(Level::INFO));
    let sweeper = tokio::spawn(sweep_every(SWEEP_INTERVAL, engine.clone(), stop.subscribe()));
    let app = app(AppState { engine: engine.clone(), tenants }).merge(callbacks_routes(engine)).layer(trace);
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await;
    tracing::info!("shutting down: finishing in-flight steps and notifications");
    // Nobody is left to receive the value if both loops already ended; that is fine.
    let _ = stop.send(true);
    for (name, task) in [("worker", worker), ("notifier", notifier_loop), ("sweep", sweeper)] {
        if let Err(err) = task.await {
            tracing::error!(loop = name, error = %err, "the loop ended abnormally");
        }
    }
    served.map_err(DevError::Serve)?;
    Ok(ExitCode::SUCCESS)
}

/// `path` as logged: a provider callback's token, which lets its holder complete the step,
/// masked (`/v1/callbacks/replicate/[token]`).
fn loggable_path(path: &str) -> String {
    const CALLBACKS: &str = "/v1/callbacks/";
    match path.strip_prefix(CALLBACKS).and_then(|rest| rest.split_once('/')) {
        Some((provider, _token)) => format!("{CALLBACKS}{provider}/[token]"),
        None => path.to_owned(),
    }
}

/// The keys given: flags, then `CHORUS_API_KEYS` (`env`), then the keys file.
fn api_keys(args: &DevArgs, env: Option<&str>) -> Result<Vec<ApiKey>, ApiKeysError> {
    let mut all = args.api_keys.clone();
    if let Some(value) = env {
        all.extend(keys::from_env_value(value)?);
    }
    if let Some(path) = &args.api_keys_file {
        all.extend(keys::from_file(path)?);
    }
    Ok(all)
}

/// Runs the sweep every `interval` until `stop`, as the scheduled rule does on AWS.
async fn sweep_every(interval: Duration, engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = ticks.tick() => {}
        }
        match engine.sweep().await {
            Ok(report) if report != SweepReport::default() => tracing::info!(?report, "the reconciler acted"),
            Ok(_) => {}
            Err(err) => tracing::error!(error = %crate::error_chain(&err), "sweep failed"),
        }
    }
}

/// A queue consumer: what to do with each message, and with one that keeps failing.
struct Consumer<F, D> {
    name: &'static str,
    handle: F,
    dead_letter: D,
}

/// Consumes a queue the way an SQS event source mapping feeds a Lambda: at most
/// `concurrency` messages in flight, a failed message re-sent after a growing delay, and
/// handed to the consumer's `dead_letter` after [`MAX_RECEIVES`] failures (where AWS would move it
/// to a dead-letter queue).
/// Returns once `stop` turns true and the in-flight messages are done.
async fn drain<M, F, Fut, D, DFut>(
    consumer: Consumer<F, D>,
    mut messages: mpsc::UnboundedReceiver<M>,
    queue: MemoryQueue<M>,
    concurrency: usize,
    mut stop: watch::Receiver<bool>,
) where
    M: Clone + Debug + Send + Sync + 'static,
    F: Fn(M) -> Fut,
    Fut: Future<Output = Result<(), EngineError>> + Send + 'static,
    D: Fn(M) -> DFut,
    DFut: Future<Output = Result<(), EngineError>> + Send + 'static,
{
    let Consumer { name, handle, dead_letter } = consumer;
    let permits = Arc::new(Semaphore::new(concurrency));
    let receives = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let mut in_flight = JoinSet::new();
    loop {
        // Wait for capacity before taking a message, so nothing sits claimed but idle.
        let permit = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed; treat it as a stop
            },
        };
        let message = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            message = messages.recv() => match message {
                Some(message) => message,
                None => break,
            },
        };
        while let Some(done) = in_flight.try_join_next() {
            report_panic(name, done);
        }
        let work = handle(message.clone());
        let give_up = dead_letter(message.clone());
        let queue = queue.clone();
        let receives = receives.clone();
        in_flight.spawn(async move {
            let _permit = permit;
            let result = work.await;
            // Messages carry no receive count, so failures are counted per message content.
            let key = format!("{message:?}");
            let failures = match &result {
                Ok(()) => {
                    forget(&receives, &key);
                    return;
                }
                Err(_) => remember_failure(&receives, &key),
            };
            let error = result.err().map(|err| crate::error_chain(&err)).unwrap_or_default();
            if failures >= MAX_RECEIVES {
                forget(&receives, &key);
                tracing::error!(consumer = name, ?message, %error, failures, "giving up on the message");
                if let Err(err) = give_up.await {
                    tracing::error!(consumer = name, error = %crate::error_chain(&err), "dead-letter handling failed");
                }
                return;
            }
            let delay = FIRST_RETRY_DELAY.saturating_mul(1_u32 << (failures - 1).min(6));
            tracing::warn!(consumer = name, ?message, %error, failures, ?delay, "will retry the message");
            if let Err(err) = queue.send(vec![message], delay).await {
                tracing::error!(consumer = name, error = %err, "cannot re-queue the message");
            }
        });
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(done) = in_flight.join_next().await {
            report_panic(name, done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(consumer = name, "in-flight work did not finish in time; abandoning it");
    }
}

fn remember_failure(receives: &Mutex<HashMap<String, u32>>, key: &str) -> u32 {
    let Ok(mut receives) = receives.lock() else {
        return MAX_RECEIVES;
    };
    let count = receives.entry(key.to_owned()).or_default();
    *count += 1;
    *count
}

fn forget(receives: &Mutex<HashMap<String, u32>>, key: &str) {
    if let Ok(mut receives) = receives.lock() {
        receives.remove(key);
    }
}

fn report_panic(consumer: &str, done: Result<(), tokio::task::JoinError>) {
    if let Err(err) = done {
        tracing::error!(consumer, error = %err, "a message handler panicked");
    }
}

/// What a developer needs to start: where it listens, the credentials, and two commands
/// that submit the example workflow and read it back. Printed, not logged, so it stays
/// readable whatever the log filter.
fn print_banner(
    addr: SocketAddr,
    keys: &[ApiKey],
    generated: bool,
    secret: &WebhookSecret,
    secret_generated: bool,
    rotating: bool,
    providers: &[String],
) {
    let base = format!("http://{addr}");
    let example = example_path();
    let mut banner = format!(
        "\nChorus dev server on {base}  (in-memory: runs are gone when it stops)\n  providers:       {}\n\n",
        providers.join(", ")
    );
    if generated {
        banner.push_str(&format!(
            "  tenant:          {DEV_TENANT}\n  API key:         {}\n",
            keys.iter().map(|k| k.key.expose_secret()).next().unwrap_or_default()
        ));
    } else {
        let tenants: Vec<&str> = keys.iter().map(|k| k.tenant.as_str()).collect();
        banner.push_str(&format!(
            "  tenants:         {} (keys from --api-key, {} or --api-keys-file)\n",
            tenants.join(", "),
            keys::ENV_VARIABLE
        ));
    }
    if secret_generated {
        banner.push_str(&format!("  webhook secret:  {}\n", secret.to_whsec().expose_secret()));
    } else {
        banner.push_str("  webhook secret:  from --webhook-secret\n");
    }
    if rotating {
        banner.push_str("                   and from --previous-webhook-secret (two signatures per notification)\n");
    }
    let key = if generated {
        keys.iter().map(|k| k.key.expose_secret().to_owned()).next().unwrap_or_default()
    } else {
        "<your key>".to_owned()
    };
    banner.push_str(&format!(
        "\nTry it (needs curl and jq):\n\
         \x20 export CHORUS_URL={base} CHORUS_API_KEY={key}\n\
         \x20 RUN=$(curl -s $CHORUS_URL/v1/runs -H \"authorization: Bearer $CHORUS_API_KEY\" \\\n\
         \x20       -H 'content-type: application/json' -d @{example} | jq -r .id)\n\
         \x20 curl -s $CHORUS_URL/v1/runs/$RUN -H \"authorization: Bearer $CHORUS_API_KEY\" | jq\n\
         \nAPI reference: {base}/openapi.json   Stop: Ctrl-C\n"
    ));
    println!("{banner}");
}

/// The example as a path curl can read from the current directory: relative when run from
/// the repository root, otherwise the absolute path in the source tree this was built from.
fn example_path() -> String {
    if Path::new(EXAMPLE).is_file() {
        return EXAMPLE.to_owned();
    }
    let in_source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(EXAMPLE);
    match in_source_tree.canonicalize() {
        Ok(path) => path.display().to_string(),
        Err(_) => EXAMPLE.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        dev: DevArgs,
    }

    #[test]
    fn keys_come_from_flags_the_environment_and_a_file_together() {
        let path = std::env::temp_dir().join(format!("chorus-dev-keys-{}", std::process::id()));
        std::fs::write(&path, "# keys\nglobex:ck_file\n").unwrap();
        let cli = Cli::parse_from(["chorus", "--api-key", "acme:ck_flag", "--api-keys-file", path.to_str().unwrap()]);
        let keys = api_keys(&cli.dev, Some("initech:ck_env")).unwrap();
        std::fs::remove_file(&path).unwrap();
        let found: Vec<(&str, &str)> = keys.iter().map(|k| (k.tenant.as_str(), k.key.expose_secret())).collect();
        assert_eq!(found, [("acme", "ck_flag"), ("initech", "ck_env"), ("globex", "ck_file")]);

        let none = Cli::parse_from(["chorus"]);
        assert!(api_keys(&none.dev, None).unwrap().is_empty(), "then a key is generated");
    }

    #[test]
    fn a_callback_token_is_not_logged() {
        assert_eq!(loggable_path("/v1/callbacks/replicate/run_x.a.5e3cret"), "/v1/callbacks/replicate/[token]");
        assert_eq!(loggable_path("/v1/runs/run_x/events"), "/v1/runs/run_x/events");
    }

    #[test]
    fn a_malformed_flag_is_refused_saying_what_is_expected() {
        let err = Cli::try_parse_from(["chorus", "--api-key", "ck_secret"]).unwrap_err().to_string();
        assert!(err.contains("expected TENANT:KEY"), "{err}");
    }
}
