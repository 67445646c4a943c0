//! Questions to the person at the terminal: the password (never echoed, never printed), the
//! folders to sync, confirmations. Prompts go to stderr so that `--json` output stays clean.

use super::Usage;
use anyhow::Context;
use mailfleet_core::Secret;
use mailfleet_core::connection_test::TestedFolder;
use std::io::{BufRead, Write};

/// The password: the first line of stdin with `--password-stdin`, else asked on the terminal
/// without echo. `allow_empty`: an empty answer is a valid one (keep the stored password).
pub fn password(
    prompt: &str,
    from_stdin: bool,
    allow_empty: bool,
) -> anyhow::Result<Secret<String>> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        strip_newline(line)
    } else {
        rpassword::prompt_password(prompt).map_err(|e| {
            Usage(format!(
                "cannot ask for the password ({e}): run it in a terminal, or pass the password \
                 on stdin with --password-stdin"
            ))
        })?
    };
    if password.is_empty() && !allow_empty {
        return Err(Usage("the password is empty".into()).into());
    }
    Ok(Secret::new(password))
}

/// Only the line break goes: spaces may be part of a password.
fn strip_newline(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

/// A line from stdin after a prompt on stderr; `None` at end of input.
fn line(prompt: &str) -> anyhow::Result<Option<String>> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer)? == 0 {
        eprintln!();
        return Ok(None);
    }
    Ok(Some(answer.trim().to_owned()))
}

/// A yes/no question; anything but `y`/`yes` (and the end of input) is no.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    Ok(line(&format!("{question} [y/N] "))?
        .is_some_and(|a| matches!(a.to_ascii_lowercase().as_str(), "y" | "yes")))
}

/// Shows the selectable folders as a numbered list and asks which to sync (comma-separated
/// numbers; an empty answer, or the end of input before any answer, takes the inbox).
pub fn choose_folders(folders: &[TestedFolder]) -> anyhow::Result<Vec<String>> {
    // The inbox first (it is the default), then the others as the server lists them.
    let mut choices: Vec<&TestedFolder> = folders.iter().filter(|f| f.selectable).collect();
    choices.sort_by_key(|f| !is_inbox(f));
    if choices.is_empty() {
        anyhow::bail!("the mailbox has no selectable folder");
    }
    eprintln!("Folders:");
    let width = choices.len().to_string().len();
    let names = choices.iter().map(|f| f.name.chars().count()).max();
    let names = names.unwrap_or(0);
    for (i, f) in choices.iter().enumerate() {
        let role = f.role.as_deref().map(|r| format!("({r})"));
        let line = format!(
            "  {:>width$}. {:<names$}  {}",
            i + 1,
            f.name,
            role.unwrap_or_default()
        );
        eprintln!("{}", line.trim_end());
    }
    let mut refused = false;
    loop {
        let answer = match line("Folders to sync (numbers, comma-separated) [1]: ")? {
            // A script's bad answer is not taken for the default.
            None if refused => return Err(Usage("no valid folder choice".into()).into()),
            None => String::new(),
            Some(a) => a,
        };
        if answer.is_empty() {
            return Ok(vec![choices[0].name.clone()]);
        }
        refused = true;
        match parse_choice(&answer, choices.len()) {
            Ok(picked) => return Ok(picked.iter().map(|&i| choices[i].name.clone()).collect()),
            Err(e) => eprintln!("{e}"),
        }
    }
}

fn is_inbox(f: &TestedFolder) -> bool {
    f.role.as_deref() == Some("inbox") || f.name.eq_ignore_ascii_case("INBOX")
}

/// `"1, 3,2"` → indexes 0, 2, 1 (in the order given, without repeats).
fn parse_choice(answer: &str, n: usize) -> Result<Vec<usize>, String> {
    let mut picked = Vec::new();
    for part in answer.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let i: usize = part
            .parse()
            .map_err(|_| format!("{part:?} is not a number from the list"))?;
        if !(1..=n).contains(&i) {
            return Err(format!("{i} is not in the list (1 to {n})"));
        }
        if !picked.contains(&(i - 1)) {
            picked.push(i - 1);
        }
    }
    if picked.is_empty() {
        return Err("name at least one folder".into());
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_folder_choice_parses_numbers() {
        assert_eq!(parse_choice("1", 3), Ok(vec![0]));
        assert_eq!(parse_choice(" 3, 1 ,3,", 3), Ok(vec![2, 0]));
        assert!(parse_choice("4", 3).is_err());
        assert!(parse_choice("0", 3).is_err());
        assert!(parse_choice("INBOX", 3).is_err());
        assert!(parse_choice(" , ", 3).is_err());
    }

    #[test]
    fn account_password_keeps_spaces() {
        assert_eq!(strip_newline(" pw \r\n".into()), " pw ");
        assert_eq!(strip_newline("pw".into()), "pw");
    }
}
