//! The `chorus local` commands step by step: `up` runs the emulator script, creates the
//! resources, starts `cargo lambda watch` and the bridge (with its supervisor) as background
//! processes and seeds a key; `down` stops what the state file says `up` started; `bridge` runs
//! the bridge in this process until shutdown; `pids` lists a function's runtime processes.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use chorus::adapters::sealing::LOCAL_STAND_IN_KEY;
use chorus::error::error_chain;
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::bridge::{self, Bridge, RouteOptions};
use crate::inflight::InFlight;
use crate::processes::{self, STATE_DIR, Started, State};
use crate::resources::{self, CreateOptions};
use crate::runtimes::{self, STACK_VARIABLE};
use crate::seed;
use crate::supervisor::{Supervisor, SupervisorConfig};
use crate::template::{Template, local_name};
use crate::{BridgeArgs, BridgeOptions, LocalError, TEMPLATE, UpArgs};

/// Set (to the exported names) in a `chorus local up` that was re-started with the emulator's
/// environment, so it does not run the emulator script again.
const EMULATOR_ENV_MARKER: &str = "CHORUS_LOCAL_EMULATOR_ENV";
/// `cargo lambda watch` compiles a function inside its first invocation, which `up` makes before
/// starting the bridge (see `warm_up`); on two cores a cold debug build of the workspace takes
/// minutes.
const COMPILE_ALLOWANCE: Duration = Duration::from_secs(15 * 60);
/// How often `up` says what it is still waiting for.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);
/// The functions' setting naming the key that seals tenants' signing secrets.
const TENANT_SECRETS_KEY_VARIABLE: &str = "CHORUS_TENANT_SECRETS_KEY";
/// Where tools.sh installs cargo-lambda (next to SAM, which needs it), relative to the repo.
const TOOLS_BIN: &str = ".tools/sam/bin";

pub(crate) async fn up(repo: &Path, args: &UpArgs) -> Result<ExitCode, LocalError> {
    if let Some(state) = State::load(repo)?
        && [&state.lambda, &state.bridge].into_iter().flatten().any(|p| processes::is_running(p.pid, &p.expect))
    {
        return Err(LocalError::AlreadyRunning { state: State::path(repo) });
    }
    // A restarted `up` (see `restart_with`) learns from the state its parent saved whether
    // the emulator was started for it.
    let mut owns_emulator = std::env::var_os("AWS_ENDPOINT_URL").is_none();
    let emulator_env = match std::env::var(EMULATOR_ENV_MARKER) {
        Ok(names) => {
            owns_emulator = State::load(repo)?.is_some_and(|state| state.owns_emulator);
            let env: BTreeMap<String, String> = names
                .split(',')
                .filter_map(|name| std::env::var(name).ok().map(|value| (name.to_owned(), value)))
                .collect();
            if env.is_empty() {
                return Err(LocalError::EnvironmentLost);
            }
            env
        }
        Err(_) => {
            eprintln!("starting the emulator ({})", args.emulator.name());
            let exports = processes::emulator_script(repo, "start", &[("EMULATOR", args.emulator.name())])?;
            // Saved now so that `down` knows which emulator to stop even if what follows fails.
            let state = State {
                emulator: args.emulator.name().to_owned(),
                owns_emulator,
                emulator_env: exports.clone(),
                ..State::default()
            };
            state.save(repo)?;
            if exports.iter().any(|(name, value)| std::env::var(name).ok().as_ref() != Some(value)) {
                return restart_with(&exports);
            }
            exports
        }
    };

    let mut state = State {
        emulator: args.emulator.name().to_owned(),
        owns_emulator,
        emulator_env: emulator_env.clone(),
        ..State::default()
    };
    state.save(repo)?;
    let config = chorus::startup::sdk_config().await;
    let template = Template::load(&repo.join(TEMPLATE))?;
    eprintln!("creating the resources of {TEMPLATE}");
    let options = CreateOptions { prefix: args.bridge.prefix.clone(), visibility_timeout: args.visibility_timeout };
    let created = resources::create(&config, &template, &options).await?;
    let lambda_url = format!("http://127.0.0.1:{}", args.lambda_port);
    state.function_env = template.local_environment(&created)?;
    supply_from_shell(&mut state.function_env);
    state.function_env.insert("CHORUS_PUBLIC_URL".to_owned(), format!("{lambda_url}/lambda-url/webhook"));
    state.save(repo)?;

    let lambda = start_lambda(repo, args.lambda_port, &state)?;
    state.lambda = Some(lambda.clone());
    state.save(repo)?;
    let api_url = format!("{lambda_url}/lambda-url/intake");
    wait_until_healthy(&format!("{api_url}/healthz"), &lambda, Duration::from_secs(args.wait_timeout)).await?;
    state.api_url = Some(api_url.clone());
    state.save(repo)?;
    warm_up(&config, &lambda_url, &template, &lambda).await?;

    let bridge = start_bridge(repo, &args.bridge, &lambda_url, &state)?;
    state.bridge = Some(bridge.clone());
    state.save(repo)?;

    let table = local_name(&args.bridge.prefix, &template.table.logical_id);
    // The key the template gives the notifier (the stand-in, locally): what it opens with.
    let secrets_key = state.function_env.get(TENANT_SECRETS_KEY_VARIABLE).map_or(LOCAL_STAND_IN_KEY, String::as_str);
    let seeded = seed::seed_api_key(&config, &table, secrets_key).await?;
    print_banner(repo, &state, &lambda, &bridge, &lambda_url, &api_url, &seeded);
    Ok(ExitCode::SUCCESS)
}

/// Fills the variables the template leaves empty (provider keys and base URLs: parameters
/// without defaults) from the shell `up` runs in, so `OPENAI_API_KEY=… chorus local up`, or
/// the variables of `chorus mock-providers`, reach the functions.
fn supply_from_shell(environment: &mut BTreeMap<String, String>) {
    for (name, value) in environment.iter_mut() {
        if value.is_empty()
            && let Ok(from_shell) = std::env::var(name)
        {
            *value = from_shell;
        }
    }
}

/// aws-config reads the process environment, and a running program cannot change its own
/// safely (`set_var` is `unsafe` and this workspace forbids unsafe code): run `up` again as a
/// child that inherits the emulator's variables, and exit with its status.
fn restart_with(exports: &BTreeMap<String, String>) -> Result<ExitCode, LocalError> {
    let exe = std::env::current_exe().map_err(LocalError::Environment)?;
    let names: Vec<&str> = exports.keys().map(String::as_str).collect();
    let status = Command::new(exe)
        .args(std::env::args_os().skip(1).collect::<Vec<OsString>>())
        .envs(exports)
        .env(EMULATOR_ENV_MARKER, names.join(","))
        .status()
        .map_err(LocalError::Environment)?;
    Ok(status.code().and_then(|code| u8::try_from(code).ok()).map_or(ExitCode::FAILURE, ExitCode::from))
}

/// `cargo lambda watch` with the emulator's and the functions' environment: every function it
/// starts inherits it.
fn start_lambda(repo: &Path, port: u16, state: &State) -> Result<Started, LocalError> {
    let log = repo.join(STATE_DIR).join("lambda.log");
    // cargo-lambda itself rather than `cargo lambda`: the pid is then the watcher's from
    // the start, not a rustup proxy's that execs into it.
    let tools = repo.join(TOOLS_BIN).join("cargo-lambda");
    let program = if tools.is_file() { tools.into_os_string() } else { OsString::from("cargo-lambda") };
    let mut command = Command::new(program);
    command
        .args(["lambda", "watch", "-A", "127.0.0.1", "-P", &port.to_string()])
        .current_dir(repo)
        .envs(&state.emulator_env)
        .envs(&state.function_env)
        // Without it aws-config probes the EC2 metadata address for credentials and region.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // Inherited by every function process: how the supervisor and `pids` tell this stack's
        // processes from another checkout's.
        .env(STACK_VARIABLE, runtimes::stack_id(repo))
        .env_remove(EMULATOR_ENV_MARKER);
    if let Some(path) = path_with_tools(repo) {
        command.env("PATH", path);
    }
    eprintln!("starting cargo lambda watch on 127.0.0.1:{port} (log: {})", log.display());
    let pid = processes::spawn_detached(command, &log)?;
    Ok(Started { pid, expect: "lambda".to_owned(), log })
}

/// PATH with tools.sh's cargo-lambda first, when it is installed.
fn path_with_tools(repo: &Path) -> Option<OsString> {
    let tools = repo.join(TOOLS_BIN);
    if !tools.is_dir() {
        return None;
    }
    let current = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(tools).chain(std::env::split_paths(&current))).ok()
}

fn start_bridge(repo: &Path, options: &BridgeOptions, lambda_url: &str, state: &State) -> Result<Started, LocalError> {
    let log = repo.join(STATE_DIR).join("bridge.log");
    let exe = std::env::current_exe().map_err(LocalError::Environment)?;
    let mut command = Command::new(exe);
    command
        .arg("local")
        .arg("--repo")
        .arg(repo)
        .args(["bridge", "--supervise", "--prefix", &options.prefix, "--concurrency", &options.concurrency.to_string()])
        .current_dir(repo)
        .envs(&state.emulator_env)
        .env("AWS_ENDPOINT_URL_LAMBDA", lambda_url)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // The bridge is not marked by the re-start: it must never run the emulator script.
        .env_remove(EMULATOR_ENV_MARKER);
    eprintln!("starting the SQS → Lambda bridge (log: {})", log.display());
    let pid = processes::spawn_detached(command, &log)?;
    Ok(Started { pid, expect: "bridge".to_owned(), log })
}

/// Polls `url` until it answers 200, saying every [`PROGRESS_EVERY`] what the build is doing.
async fn wait_until_healthy(url: &str, lambda: &Started, timeout: Duration) -> Result<(), LocalError> {
    // A request blocks while cargo lambda compiles the function, so each may take long.
    let client = chorus::tls::http_client().timeout(Duration::from_secs(60)).build().map_err(LocalError::Http)?;
    let started = Instant::now();
    let mut reported = started;
    eprintln!("waiting for {url} (the first start compiles the functions: minutes)");
    loop {
        if !processes::is_running(lambda.pid, &lambda.expect) {
            return Err(LocalError::LambdaExited {
                log: lambda.log.clone(),
                tail: processes::log_tail(&lambda.log, 30),
            });
        }
        let last = match client.get(url).send().await {
            Ok(response) if response.status() == reqwest::StatusCode::OK => {
                eprintln!("intake answers ({} s)", started.elapsed().as_secs());
                return Ok(());
            }
            Ok(response) => format!("HTTP {}", response.status()),
            Err(err) => error_chain(&err),
        };
        if started.elapsed() >= timeout {
            return Err(LocalError::NotHealthy {
                url: url.to_owned(),
                waited: started.elapsed(),
                last,
                log: lambda.log.clone(),
                tail: processes::log_tail(&lambda.log, 30),
            });
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            let doing = processes::log_tail(&lambda.log, 1);
            eprintln!("  {} s: {}", started.elapsed().as_secs(), doing.trim());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Invokes every SQS-fed function once with an empty batch, so `cargo lambda watch` compiles it
/// now rather than inside the first real batch, where a short visibility timeout would hand the
/// same messages out again while the build runs. Also shows a function that cannot start.
async fn warm_up(
    config: &SdkConfig,
    lambda_url: &str,
    template: &Template,
    lambda: &Started,
) -> Result<(), LocalError> {
    let client = bridge::lambda_client(config, Some(lambda_url));
    for function in template.functions.iter().filter(|f| !f.sqs_events.is_empty()) {
        eprintln!("compiling and starting {}", function.binary);
        let started = Instant::now();
        let invoked = tokio::time::timeout(
            function.timeout + COMPILE_ALLOWANCE,
            client
                .invoke()
                .function_name(&function.binary)
                .payload(aws_sdk_lambda::primitives::Blob::new(r#"{"Records":[]}"#))
                .send(),
        )
        .await;
        match invoked {
            Ok(Ok(output)) if output.function_error.is_none() => {
                eprintln!("  {} ready ({} s)", function.binary, started.elapsed().as_secs());
            }
            Ok(Ok(output)) => tracing::warn!(
                function = function.binary,
                error = output.function_error,
                "the function failed on an empty batch; see {}",
                lambda.log.display()
            ),
            Ok(Err(err)) => tracing::warn!(
                function = function.binary,
                error = %error_chain(&err),
                "the function failed on an empty batch; see {}",
                lambda.log.display()
            ),
            Err(_) => {
                tracing::warn!(function = function.binary, "no answer to an empty batch; see {}", lambda.log.display())
            }
        }
    }
    Ok(())
}

pub(crate) async fn down(repo: &Path) -> Result<ExitCode, LocalError> {
    let state = State::load(repo)?;
    let mut stopped = Vec::new();
    if let Some(state) = &state {
        // The bridge first, so it does not invoke functions that are going away.
        for (name, process) in [("bridge", &state.bridge), ("cargo lambda watch", &state.lambda)] {
            if let Some(process) = process
                && processes::stop_group(process.pid, &process.expect).await
            {
                stopped.push(name);
            }
        }
    }
    // Without a state file nothing says who started an emulator: stop what the script
    // started, as `down` after a lost state file should.
    if state.as_ref().is_none_or(|state| state.owns_emulator) {
        let emulator = state.as_ref().map_or("localstack", |s| s.emulator.as_str());
        processes::emulator_script(repo, "stop", &[("EMULATOR", emulator)])?;
        stopped.push("the emulator");
    }
    State::remove(repo)?;
    if stopped.is_empty() {
        eprintln!("nothing was running");
    } else {
        eprintln!("stopped {}", stopped.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn run_bridge(
    repo: &Path,
    args: BridgeArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<ExitCode, LocalError> {
    let config = chorus::startup::sdk_config().await;
    let template = Template::load(&repo.join(TEMPLATE))?;
    let found = resources::locate(&config, &template, &args.options.prefix).await?;
    let route_options =
        RouteOptions { prefix: args.options.prefix.clone(), max_concurrency: usize::from(args.options.concurrency) };
    let routes = bridge::routes(&template, &found, &route_options)?;
    if args.lambda_endpoint.is_none() {
        tracing::warn!("AWS_ENDPOINT_URL_LAMBDA is not set: invoking functions at the environment's default endpoint");
    }
    let in_flight = InFlight::new();
    let supervisor = if args.supervise { Some(supervisor(repo, &in_flight)?) } else { None };
    let lambda = bridge::lambda_client(&config, args.lambda_endpoint.as_deref());
    let bridge = Bridge::with_clients(aws_sdk_sqs::Client::new(&config), lambda, &config).with_in_flight(in_flight);
    let (stop, stopped) = watch::channel(false);
    let supervising = supervisor.map(|supervisor| tokio::spawn(supervisor.run(stopped.clone())));
    let running = tokio::spawn(async move { bridge.run(routes, stopped).await });
    shutdown.await;
    tracing::info!("stopping the bridge");
    // Nobody is left to receive it if the bridge already ended; that is fine.
    let _ = stop.send(true);
    for task in std::iter::once(running).chain(supervising) {
        if let Err(err) = task.await {
            tracing::error!(error = %err, "the bridge ended abnormally");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The supervisor of the stack `up` started in `repo`, from its state file.
fn supervisor(repo: &Path, in_flight: &InFlight) -> Result<Supervisor, LocalError> {
    let nothing = || LocalError::NothingToSupervise { state: State::path(repo) };
    let lambda = State::load(repo)?.and_then(|state| state.lambda).ok_or_else(nothing)?;
    let config = SupervisorConfig {
        stack: runtimes::stack_id(repo),
        watch_pid: lambda.pid,
        watch_expect: lambda.expect,
        log_dir: repo.join(STATE_DIR),
    };
    Ok(Supervisor::new(config, in_flight.clone()))
}

/// `chorus local pids <function>`: one PID a line on stdout; exit status 1 when there is none.
pub(crate) fn print_pids(repo: &Path, function: &str) -> ExitCode {
    let pids = runtimes::function_pids(repo, function);
    if pids.is_empty() {
        eprintln!("no runtime process of {function} runs in the stack of {}", repo.display());
        return ExitCode::FAILURE;
    }
    for pid in pids {
        println!("{pid}");
    }
    ExitCode::SUCCESS
}

/// How to use the stack: printed, not logged, so it reads the same whatever the log filter.
fn print_banner(
    repo: &Path,
    state: &State,
    lambda: &Started,
    bridge: &Started,
    lambda_url: &str,
    api_url: &str,
    seeded: &seed::SeededKey,
) {
    let relative = |path: &Path| path.strip_prefix(repo).unwrap_or(path).display().to_string();
    let key_line = format!(
        "  tenant:    {}\n  API key:   {}\n  webhooks:  signed with {}\n",
        seeded.tenant,
        seeded.key.expose_secret(),
        seeded.webhook_secret.to_whsec().expose_secret()
    );
    let mut exports: Vec<String> =
        state.emulator_env.iter().map(|(name, value)| format!("{name}={}", processes::shell_quote(value))).collect();
    exports.push(format!("AWS_ENDPOINT_URL_LAMBDA={lambda_url}"));
    exports.push(format!("CHORUS_URL={api_url}"));
    exports.push(format!("CHORUS_API_KEY={}", processes::shell_quote(seeded.key.expose_secret())));
    println!(
        "\nChorus local stack is up (emulator: {emulator})\n\n\
         \x20 API:       {api_url}\n\
         {key_line}\
         \x20 logs:      {lambda_log} (functions), {bridge_log} (bridge), .chorus/emulator/ (emulator)\n\
         \x20 state:     {state_file}\n\
         \x20 stop:      chorus local down\n\n\
         export {exports}\n",
        emulator = state.emulator,
        lambda_log = relative(&lambda.log),
        bridge_log = relative(&bridge.log),
        state_file = relative(&State::path(repo)),
        exports = exports.join(" "),
    );
}
