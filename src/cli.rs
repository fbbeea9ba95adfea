//! The command line: `serve`, `migrate`, `user create`, `demo`.

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
    Demo,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        #[arg(long)]
        username: String,
    },
}
