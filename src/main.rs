#![recursion_limit = "256"]

use std::io::Read as _;
use std::process::ExitCode;

use calcache::cli::{Cli, Command, ConfigCommand, SessionsCommand, UserCommand};
use calcache::config::Settings;
use calcache::domain::{Password, Username};
use calcache::error::Chain;
use calcache::service::{auth, housekeeping};
use calcache::startup::{self, Application};
use calcache::{demo, telemetry};
use clap::Parser as _;

// The feed's hit path allocates the stored body (a few KB) and a handful of
// small buffers per request, from every worker thread at once; mimalloc's
// per-thread heaps serve that with less CPU than glibc's malloc
// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("calcache: configuration: {}", Chain(&e));
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log);
    match run(cli.command, &mut settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain = Chain(&*e);
            tracing::error!(error = %chain, "calcache failed");
            eprintln!("calcache: {chain}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: &mut Settings) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve { port, bind } => {
            if let Some(port) = port {
                settings.server.port = port;
            }
            if let Some(bind) = bind {
                settings.server.host = bind;
            }
            let app = Application::build(settings.clone()).await?;
            app.run_until_stopped().await?;
        }
        Command::Migrate => {
            let state = startup::build_state(settings)?;
            let applied = startup::run_migrations(&state.pool).await?;
            println!("{applied} migration(s) applied");
        }
        Command::User { command: UserCommand::Create { username } } => {
            let username = Username::parse(username).map_err(|e| format!("username {e}"))?;
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = Password::parse(password.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| format!("password {e}"))?;
            let state = startup::build_state(settings)?;
            startup::run_migrations(&state.pool).await?;
            let user = auth::create_user(&state, username, password).await?;
            println!("created user {} (id {})", user.username, user.id);
        }
        Command::Demo { force } => {
            let env = calcache::config::environment();
            if env == "production" && !force {
                return Err(format!(
                    "refusing to create the demo accounts ({} / {}, well-known passwords) in the production \
                     environment (CALCACHE_ENV={env}); pass --force if you really mean it",
                    demo::DEMO_USER,
                    demo::DEMO_USER_2
                )
                .into());
            }
            let state = startup::build_state(settings)?;
            startup::run_migrations(&state.pool).await?;
            let summary = demo::seed(&state, 300).await?;
            if summary.created_items == 0 {
                println!("demo data already present (user {} / {})", demo::DEMO_USER, demo::DEMO_PASSWORD);
            } else {
                println!(
                    "created users {} and {} (password {}) with {} work items",
                    demo::DEMO_USER,
                    demo::DEMO_USER_2,
                    demo::DEMO_PASSWORD,
                    summary.created_items
                );
            }
        }
        Command::Sessions { command: SessionsCommand::Prune } => {
            let state = startup::build_state(settings)?;
            startup::run_migrations(&state.pool).await?;
            let deleted = housekeeping::prune_expired_sessions(&state).await?;
            println!("{deleted} expired session(s) deleted");
        }
        Command::Config { command: ConfigCommand::Check { connect } } => {
            // Loading already checked it (or `main` exited with code 2).
            print!("{}", startup::describe(settings));
            if connect {
                startup::check_connections(settings).await?;
                println!("postgres: answers; redis: answers, version supported");
            }
            println!("configuration ok");
        }
    }
    Ok(())
}
