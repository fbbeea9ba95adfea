//! The command line: `serve`, `migrate`, `user create`, `demo`,
//! `sessions prune`, `config check`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "calcache", version, about = "Calendar feeds from PostgreSQL through a versioned Redis cache")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (applies pending migrations first).
    Serve {
        /// Port to listen on (overrides server.port).
        #[arg(long)]
        port: Option<u16>,
        /// Address to bind (overrides server.host).
        #[arg(long)]
        bind: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Create the demo users (demo / demo-password, demo2 / demo-password)
    /// and a few hundred work items around today. Does nothing if they exist.
    /// Refused when CALCACHE_ENV is `production` (well-known passwords)
    /// unless `--force` is given.
    Demo {
        /// Create the demo accounts even in production.
        #[arg(long)]
        force: bool,
    },
    /// Session housekeeping.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Delete every expired session now (each replica also does it every
    /// auth.session_prune_interval_secs).
    Prune,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and check the configuration as `serve` would, without starting
    /// anything; exit 0 when it is valid, 2 with the reason otherwise.
    Check {
        /// Also connect to PostgreSQL and Redis and check the Redis version.
        #[arg(long)]
        connect: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        #[arg(long)]
        username: String,
    },
}
