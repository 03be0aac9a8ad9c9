//! `holdfast passwd FILE USER`: add, change or delete a user of a password file
//! (`[auth] password_file`). Passwords are stored as salted Argon2id hashes, never in clear.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use holdfast_broker::auth::PasswordFile;

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The password file; created when missing
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The user name to add, change or delete (no ':')
    #[arg(value_name = "USER")]
    pub user: String,
    /// Read the password from the first line of standard input instead of prompting
    #[arg(long, conflicts_with = "delete")]
    pub password_stdin: bool,
    /// Delete USER from FILE
    #[arg(long)]
    pub delete: bool,
}

pub fn run(args: PasswdArgs) -> ExitCode {
    match execute(args) {
        Ok(message) => {
            eprintln!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(args: PasswdArgs) -> anyhow::Result<String> {
    if args.user.is_empty() || args.user.contains([':', '\n', '\r']) {
        bail!("a user name must be non-empty and contain no ':' or line break");
    }
    let mut file = match std::fs::read_to_string(&args.file) {
        Ok(text) => PasswordFile::parse(&text)
            .map_err(|(line, why)| anyhow::anyhow!("{} line {line}: {why}", args.file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !args.delete => {
            PasswordFile::default()
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", args.file.display())),
    };
    let message = if args.delete {
        if !file.remove(&args.user) {
            bail!("no user {:?} in {}", args.user, args.file.display());
        }
        format!("deleted {} from {}", args.user, args.file.display())
    } else {
        let password = read_password(args.password_stdin)?;
        let existed = file.get(&args.user).is_some();
        file.set(&args.user, password.as_bytes());
        let verb = if existed {
            "changed the password of"
        } else {
            "added"
        };
        format!("{verb} {} in {}", args.user, args.file.display())
    };
    write_atomically(&args.file, &file.to_text())?;
    Ok(message)
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    };
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

/// Writes `text` to a temporary file beside `path` (mode 0600 on Unix), then renames it over
/// `path`, so a reader never sees half a file.
fn write_atomically(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("passwd")
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
