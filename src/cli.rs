//! The command line every binary shares: one way to read flags, one `--help` layout, one
//! wording for mistakes, and one exit code for them.
//!
//! A binary describes itself in a [`Help`] and reads its arguments in one function over a
//! [`Parser`]; [`parse`] runs that function and answers `--help`, `--version` and a bad
//! command line the same way in all four: help on stdout and exit 0, or
//! `<binary>: <what is wrong>; see --help` on stderr and exit [`USAGE_EXIT`].
//!
//! Flags are long (`--name`), with their value either next (`--name value`) or inline
//! (`--name=value`); `-h` and `-V` are the only short ones. A flag without a value refuses
//! an inline one, and a value is never empty.

use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;

/// The exit code of every binary for a bad command line.
pub const USAGE_EXIT: u8 = 2;

/// Why reading the command line stopped before there was anything to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `-h` or `--help`: print the help, exit 0.
    Help,
    /// `-V` or `--version`: print the version, exit 0.
    Version,
    /// A bad command line: the message says what is wrong (exit [`USAGE_EXIT`]).
    Usage(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Help => f.write_str("--help"),
            Stop::Version => f.write_str("--version"),
            Stop::Usage(message) => f.write_str(message),
        }
    }
}

impl From<String> for Stop {
    fn from(message: String) -> Stop {
        Stop::Usage(message)
    }
}

impl From<&str> for Stop {
    fn from(message: &str) -> Stop {
        Stop::Usage(message.to_owned())
    }
}

/// A flag this binary does not have.
pub fn unknown_flag(flag: &str) -> Stop {
    Stop::Usage(format!("unknown flag {flag:?}"))
}

/// A positional argument this binary does not take.
pub fn unexpected_argument(arg: &str) -> Stop {
    Stop::Usage(format!("unexpected argument {arg:?}"))
}

/// One command-line argument, as [`Parser::next_arg`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `--name` (an inline `=value` is kept for [`Parser::value`]).
    Flag(String),
    /// Anything not starting with `-`, or `-` alone.
    Positional(String),
}

/// The arguments after the program name, read one at a time.
pub struct Parser {
    args: std::vec::IntoIter<OsString>,
    /// The flag last returned, and its `=value` if it had one and nothing took it yet.
    flag: Option<String>,
    inline: Option<String>,
}

impl Parser {
    pub fn new<I, S>(args: I) -> Parser
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        Parser {
            args: args.into_iter(),
            flag: None,
            inline: None,
        }
    }

    /// This process's arguments, without the program name.
    pub fn from_env() -> Parser {
        Parser::new(std::env::args_os().skip(1))
    }

    /// The next argument, or `None` at the end. `-h`/`--help` and `-V`/`--version` stop
    /// the parse wherever they are. A flag whose inline value was not taken with
    /// [`Parser::value`] is an error here ("--json takes no value").
    pub fn next_arg(&mut self) -> Result<Option<Arg>, Stop> {
        if let (Some(flag), Some(_)) = (&self.flag, &self.inline) {
            return Err(Stop::Usage(format!("{flag} takes no value")));
        }
        self.flag = None;
        self.inline = None;
        let Some(raw) = self.args.next() else {
            return Ok(None);
        };
        let arg = utf8(raw)?;
        if !arg.starts_with('-') || arg == "-" {
            return Ok(Some(Arg::Positional(arg)));
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(Stop::Help),
            "-V" | "--version" => return Err(Stop::Version),
            _ => {}
        }
        self.flag = Some(flag.clone());
        self.inline = inline;
        Ok(Some(Arg::Flag(flag)))
    }

    /// The value of the flag just returned: its inline `=value`, else the next argument.
    /// Missing or empty is an error ("--target-url needs a value").
    pub fn value(&mut self) -> Result<String, Stop> {
        let flag = self.flag.clone().unwrap_or_default();
        let value = match self.inline.take() {
            Some(value) => Some(value),
            None => self.args.next().map(utf8).transpose()?,
        };
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Stop::Usage(format!("{flag} needs a value")))
    }
}

fn utf8(arg: OsString) -> Result<String, Stop> {
    arg.into_string()
        .map_err(|arg| Stop::Usage(format!("argument {arg:?} is not valid UTF-8")))
}

/// A binary's `--help`: a title and intro, then USAGE, FLAGS, ENVIRONMENT and EXIT CODES,
/// in that order, every section's lines indented by two spaces. Section texts are
/// written unindented (continuation lines keep their own extra indent).
#[derive(Debug, Clone, Copy)]
pub struct Help {
    /// The binary's name, which also starts its error messages.
    pub name: &'static str,
    /// What it does: one line, then optionally a paragraph more.
    pub about: &'static str,
    pub usage: &'static str,
    pub flags: &'static str,
    pub environment: &'static str,
    pub exit_codes: &'static str,
}

impl fmt::Display for Help {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.about.trim_end())?;
        for (title, text) in [
            ("USAGE", self.usage),
            ("FLAGS", self.flags),
            ("ENVIRONMENT", self.environment),
            ("EXIT CODES", self.exit_codes),
        ] {
            write!(f, "\n\n{title}:")?;
            for line in text.trim_end().lines() {
                if line.is_empty() {
                    writeln!(f)?;
                } else {
                    write!(f, "\n  {line}")?;
                }
            }
        }
        Ok(())
    }
}

/// Reads this process's command line with `read`. On `--help` or `--version` prints
/// them; on a bad command line prints `<name>: <message>; see --help` to stderr. Either
/// way returns the exit code to leave with.
pub fn parse<T>(
    help: &Help,
    read: impl FnOnce(&mut Parser) -> Result<T, Stop>,
) -> Result<T, ExitCode> {
    parse_from(help, Parser::from_env(), read)
}

/// [`parse`] over the given arguments.
pub fn parse_from<T>(
    help: &Help,
    mut parser: Parser,
    read: impl FnOnce(&mut Parser) -> Result<T, Stop>,
) -> Result<T, ExitCode> {
    match read(&mut parser) {
        Ok(value) => Ok(value),
        Err(Stop::Help) => {
            println!("{help}");
            Err(ExitCode::SUCCESS)
        }
        Err(Stop::Version) => {
            println!("{} {}", help.name, env!("CARGO_PKG_VERSION"));
            Err(ExitCode::SUCCESS)
        }
        Err(Stop::Usage(message)) => {
            eprintln!("{}", usage_line(help.name, &message));
            Err(ExitCode::from(USAGE_EXIT))
        }
    }
}

/// The one line a bad command line prints.
pub fn usage_line(name: &str, message: &str) -> String {
    format!("{name}: {message}; see --help")
}

/// For binaries that take no arguments at all.
pub fn no_arguments(parser: &mut Parser) -> Result<(), Stop> {
    match parser.next_arg()? {
        None => Ok(()),
        Some(Arg::Flag(flag)) => Err(unknown_flag(&flag)),
        Some(Arg::Positional(arg)) => Err(unexpected_argument(&arg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(args: &[&str]) -> Parser {
        Parser::new(args.iter().copied())
    }

    /// A small command line: `--json`, `--file PATH`, one positional.
    #[derive(Debug, Default, PartialEq)]
    struct Demo {
        json: bool,
        file: Option<String>,
        name: Option<String>,
    }

    fn demo(args: &[&str]) -> Result<Demo, Stop> {
        let mut p = parser(args);
        let mut demo = Demo::default();
        while let Some(arg) = p.next_arg()? {
            match arg {
                Arg::Flag(flag) => match flag.as_str() {
                    "--json" => demo.json = true,
                    "--file" => demo.file = Some(p.value()?),
                    _ => return Err(unknown_flag(&flag)),
                },
                Arg::Positional(name) if demo.name.is_none() => demo.name = Some(name),
                Arg::Positional(other) => return Err(unexpected_argument(&other)),
            }
        }
        Ok(demo)
    }

    #[test]
    fn values_come_next_or_inline_and_positionals_are_kept() {
        let expected = Demo {
            json: true,
            file: Some("/tmp/a=b".into()),
            name: Some("latest".into()),
        };
        assert_eq!(
            demo(&["--json", "--file", "/tmp/a=b", "latest"]),
            Ok(expected)
        );
        let inline = demo(&["latest", "--file=/tmp/a=b", "--json"]).unwrap();
        assert_eq!(inline.file.as_deref(), Some("/tmp/a=b"));
        // A value may look like a flag: it is taken because the flag asked for one.
        assert_eq!(
            demo(&["--file", "--json"]).unwrap().file.as_deref(),
            Some("--json")
        );
        assert_eq!(demo(&["-"]).unwrap().name.as_deref(), Some("-"));
    }

    #[test]
    fn help_and_version_stop_wherever_they_are() {
        assert_eq!(demo(&["--json", "--help"]), Err(Stop::Help));
        assert_eq!(demo(&["-h", "--bogus"]), Err(Stop::Help));
        assert_eq!(demo(&["-V"]), Err(Stop::Version));
        assert_eq!(demo(&["latest", "--version"]), Err(Stop::Version));
    }

    #[test]
    fn mistakes_have_one_wording() {
        for (args, expected) in [
            (&["--bogus"][..], r#"unknown flag "--bogus""#),
            (&["-x"][..], r#"unknown flag "-x""#),
            (&["--bogus=1"][..], r#"unknown flag "--bogus""#),
            (&["a", "b"][..], r#"unexpected argument "b""#),
            (&["--file"][..], "--file needs a value"),
            (&["--file="][..], "--file needs a value"),
            (&["--json=yes"][..], "--json takes no value"),
        ] {
            assert_eq!(demo(args), Err(Stop::Usage(expected.into())), "{args:?}");
        }
        assert_eq!(
            usage_line("dob-x", r#"unknown flag "--y""#),
            r#"dob-x: unknown flag "--y"; see --help"#
        );
    }

    #[test]
    fn a_binary_without_arguments_refuses_any() {
        assert_eq!(no_arguments(&mut parser(&[])), Ok(()));
        assert_eq!(no_arguments(&mut parser(&["--help"])), Err(Stop::Help));
        assert_eq!(
            no_arguments(&mut parser(&["--port", "1"])),
            Err(unknown_flag("--port"))
        );
        assert_eq!(
            no_arguments(&mut parser(&["serve"])),
            Err(unexpected_argument("serve"))
        );
    }

    #[test]
    fn arguments_that_are_not_utf8_are_refused() {
        use std::os::unix::ffi::OsStringExt;
        let mut p = Parser::new([OsString::from_vec(vec![b'-', b'-', 0xff])]);
        assert!(matches!(p.next_arg(), Err(Stop::Usage(m)) if m.contains("not valid UTF-8")));
    }

    #[test]
    fn help_has_its_sections_in_order_and_indented() {
        let help = Help {
            name: "dob-x",
            about: "does x\n\nAt length.",
            usage: "dob-x [--json]",
            flags: "--json   report\n         on stdout",
            environment: "DOB_X   the x",
            exit_codes: "0  done\n2  bad command line",
        };
        let text = help.to_string();
        assert!(text.starts_with("dob-x: does x\n\nAt length.\n\nUSAGE:\n  dob-x [--json]\n"));
        let positions: Vec<usize> = [
            "\nUSAGE:\n",
            "\nFLAGS:\n",
            "\nENVIRONMENT:\n",
            "\nEXIT CODES:\n",
        ]
        .iter()
        .map(|s| {
            text.find(s)
                .unwrap_or_else(|| panic!("{s:?} missing:\n{text}"))
        })
        .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.contains("\n  --json   report\n           on stdout\n"));
        assert!(text.ends_with("\n  2  bad command line"));
    }
}
