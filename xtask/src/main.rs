//! `cargo xtask`: the project's build, run, test and benchmark commands.
//!
//! Each command sets up what a fresh machine lacks on its own (the wasm target,
//! npm packages, the Python venv, Chromium), so a new user types nothing else.

mod bench;
mod build;
mod cluster_run;
mod fuzz;
mod setup;
mod soak;
mod test;
mod wasm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "signalroom's build, run, test and benchmark commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build everything in release mode: the server, the npm package and the demo's assets.
    Build,
    /// Build everything, then serve the demo page and the API on port 3001
    /// (with `--nodes N`: a private Redis and N cluster nodes on ports 3001..).
    Run {
        /// Run a cluster of this many nodes (1-9) on ports 3001.., sharing rooms
        /// through a private redis-server (see README "Running several nodes").
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=9))]
        nodes: Option<u8>,
        /// Extra arguments passed to `signalroom` (see `signalroom --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit, property, integration, compatibility and browser tests.
    Test,
    /// Benchmark signalroom against the Node reference server.
    Bench {
        /// Extra arguments for the benchmark driver.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Soak and leak check: cycles of clients against the release server (see `cargo xtask soak --help`).
    Soak {
        /// Sizes (`--cycles`, `--clients`, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the fuzz targets (cargo-fuzz, stable toolchain; see `cargo xtask fuzz --help`).
    Fuzz {
        /// `[TARGET] [--seconds N]`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    // Cargo's runner for wasm32 tests calls back into this binary (see `wasm::test_wasm`).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "wasm-bindgen-test-runner") {
        return wasm::test_runner(args[1..].to_vec());
    }
    match Cli::parse().command {
        Command::Build => build::all(),
        Command::Run { nodes: None, args } => build::run(&args),
        Command::Run {
            nodes: Some(nodes),
            args,
        } => cluster_run::main(nodes, &args),
        Command::Test => test::all(),
        Command::Bench { args } => bench::main(&args),
        Command::Soak { args } => soak::main(&args),
        Command::Fuzz { args } => fuzz::main(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<(Option<u8>, Vec<String>), clap::Error> {
        let cli = Cli::try_parse_from(["xtask", "run"].iter().chain(args))?;
        match cli.command {
            Command::Run { nodes, args } => Ok((nodes, args)),
            _ => panic!("not run"),
        }
    }

    #[test]
    fn run_takes_nodes_and_passes_the_rest_on() {
        assert_eq!(run(&[]).ok(), Some((None, vec![])));
        let port = vec!["--port".to_string(), "4000".to_string()];
        assert_eq!(run(&["--port", "4000"]).ok(), Some((None, port.clone())));
        assert_eq!(
            run(&["--nodes", "3", "--", "--port", "4000"]).ok(),
            Some((Some(3), port))
        );
        assert_eq!(run(&["--nodes", "9"]).ok(), Some((Some(9), vec![])));
        for bad in ["0", "10", "x"] {
            assert!(run(&["--nodes", bad]).is_err(), "{bad}");
        }
    }
}
