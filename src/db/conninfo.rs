//! PostgreSQL connection strings as the toolkit passes them to `pg_dump` and
//! `pg_restore`: the same URL pointed at another database, and the password taken out
//! of the command line (where `ps` would show it) into `PGPASSWORD`. Pure string work;
//! both the URL form (`postgresql://...`) and the `key=value` form are handled.

use crate::{Error, Result};

/// `url` without its password, and the password (decoded), if it had one.
pub fn split_password(url: &str) -> (String, Option<String>) {
    match url_parts(url) {
        Some(parts) => {
            let mut password = None;
            let mut userinfo = parts.userinfo.map(str::to_owned);
            if let Some(info) = parts.userinfo {
                if let Some((user, pass)) = info.split_once(':') {
                    password = Some(percent_decode(pass));
                    userinfo = Some(user.to_owned());
                }
            }
            let mut query: Vec<&str> = Vec::new();
            for pair in parts.query.split('&').filter(|p| !p.is_empty()) {
                match pair.strip_prefix("password=") {
                    Some(pass) => password = Some(percent_decode(pass)),
                    None => query.push(pair),
                }
            }
            let rebuilt = Parts {
                userinfo: userinfo.as_deref(),
                query: &query.join("&"),
                ..parts
            };
            (rebuilt.to_string(), password)
        }
        None => {
            let mut password = None;
            let kept: Vec<String> = keyword_pairs(url)
                .into_iter()
                .filter_map(|(key, value)| {
                    if key == "password" {
                        password = Some(value);
                        None
                    } else {
                        Some(format!("{key}={}", quote_keyword_value(&value)))
                    }
                })
                .collect();
            (kept.join(" "), password)
        }
    }
}

/// `url` pointed at database `db` (everything else unchanged).
pub fn with_database(url: &str, db: &str) -> String {
    match url_parts(url) {
        Some(parts) => Parts {
            path: &percent_encode(db),
            ..parts
        }
        .to_string(),
        None => {
            let mut kept: Vec<String> = keyword_pairs(url)
                .into_iter()
                .filter(|(key, _)| key != "dbname")
                .map(|(key, value)| format!("{key}={}", quote_keyword_value(&value)))
                .collect();
            kept.push(format!("dbname={}", quote_keyword_value(db)));
            kept.join(" ")
        }
    }
}

/// `url` with `password`, unless it already carries one (then unchanged): how a
/// password kept in a file (`DOB_DATABASE_PASSWORD_FILE`) joins a URL that names none.
pub fn with_password(url: &str, password: &str) -> String {
    if split_password(url).1.is_some() {
        return url.to_owned();
    }
    match url_parts(url) {
        Some(parts) => {
            let pair = format!("password={}", percent_encode(password));
            let query = if parts.query.is_empty() {
                pair
            } else {
                format!("{}&{pair}", parts.query)
            };
            Parts {
                query: &query,
                ..parts
            }
            .to_string()
        }
        None => format!("{url} password={}", quote_keyword_value(password)),
    }
}

/// The `sslmode` a URL asks for, if it names one (the last one, as libpq takes it).
pub fn ssl_mode(url: &str) -> Option<String> {
    match url_parts(url) {
        Some(parts) => parts
            .query
            .rsplit('&')
            .find_map(|pair| pair.strip_prefix("sslmode="))
            .map(percent_decode),
        None => keyword_pairs(url)
            .into_iter()
            .rev()
            .find(|(key, _)| key == "sslmode")
            .map(|(_, value)| value),
    }
}

/// `url` as the driver (`postgres`) parses it: it knows `sslmode` only up to `require`,
/// so `verify-full` is passed as `require` (the connector of [`crate::db::dbtls`] does the
/// verifying). Everything else is unchanged.
pub fn for_driver(url: &str) -> std::borrow::Cow<'_, str> {
    match ssl_mode(url).as_deref() {
        Some("verify-full") => with_ssl_mode(url, "require").into(),
        _ => url.into(),
    }
}

/// The TCP host and port of a libpq keyword connection string (`primary_conninfo`), read
/// without the driver, which refuses libpq-only keys such as `sslrootcert`.
pub fn keyword_host_port(conninfo: &str) -> Option<(String, u16)> {
    let pairs = keyword_pairs(conninfo);
    let value = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let host = value("host").filter(|h| !h.is_empty() && !h.starts_with('/'))?;
    let port = match value("port") {
        Some(port) => port.parse().ok()?,
        None => 5432,
    };
    Some((host, port))
}

/// `url` with every `sslmode` replaced by `mode` (added when it names none).
pub fn with_ssl_mode(url: &str, mode: &str) -> String {
    match url_parts(url) {
        Some(parts) => {
            let mut query: Vec<String> = parts
                .query
                .split('&')
                .filter(|pair| !pair.is_empty() && !pair.starts_with("sslmode="))
                .map(str::to_owned)
                .collect();
            query.push(format!("sslmode={}", percent_encode(mode)));
            Parts {
                query: &query.join("&"),
                ..parts
            }
            .to_string()
        }
        None => {
            let mut kept: Vec<String> = keyword_pairs(url)
                .into_iter()
                .filter(|(key, _)| key != "sslmode")
                .map(|(key, value)| format!("{key}={}", quote_keyword_value(&value)))
                .collect();
            kept.push(format!("sslmode={}", quote_keyword_value(mode)));
            kept.join(" ")
        }
    }
}

/// The database a URL names.
pub fn database_name(url: &str) -> Result<String> {
    let config = for_driver(url)
        .parse::<postgres::Config>()
        .map_err(|e| Error::config("database URL", format!("is not valid: {e}")))?;
    config
        .get_dbname()
        .map(str::to_owned)
        .ok_or_else(|| Error::config("database URL", "names no database"))
}

/// A URL safe to print: the password replaced.
pub fn redacted(url: &str) -> String {
    match split_password(url) {
        (without, Some(_)) => format!("{without} (password hidden)"),
        (without, None) => without,
    }
}

#[derive(Clone, Copy)]
struct Parts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    hosts: &'a str,
    path: &'a str,
    query: &'a str,
}

impl std::fmt::Display for Parts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if let Some(info) = self.userinfo {
            write!(f, "{info}@")?;
        }
        write!(f, "{}/{}", self.hosts, self.path)?;
        if !self.query.is_empty() {
            write!(f, "?{}", self.query)?;
        }
        Ok(())
    }
}

fn url_parts(url: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "postgresql" && scheme != "postgres" {
        return None;
    }
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((info, hosts)) => (Some(info), hosts),
        None => (None, authority),
    };
    Some(Parts {
        scheme,
        userinfo,
        hosts,
        path,
        query,
    })
}

/// `key=value` pairs of a keyword connection string (values may be single-quoted,
/// with `\'` and `\\` escapes).
fn keyword_pairs(conninfo: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
    }
    pairs
}

fn quote_keyword_value(value: &str) -> String {
    let plain =
        !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = digits.and_then(|d| u8::from_str_radix(d, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssl_mode_is_read_and_replaced_in_both_forms() {
        let url =
            "postgresql://dob@10.0.0.1,10.0.1.1/dob?sslmode=prefer&target_session_attrs=read-write";
        assert_eq!(ssl_mode(url).as_deref(), Some("prefer"));
        assert_eq!(
            with_ssl_mode(url, "require"),
            "postgresql://dob@10.0.0.1,10.0.1.1/dob?target_session_attrs=read-write&sslmode=require"
        );
        assert_eq!(ssl_mode("postgresql://h/db"), None);
        assert_eq!(
            with_ssl_mode("postgresql://h/db", "require"),
            "postgresql://h/db?sslmode=require"
        );
        let keywords = "host=10.0.0.1 sslmode='verify-full' dbname=dob";
        assert_eq!(ssl_mode(keywords).as_deref(), Some("verify-full"));
        assert_eq!(
            with_ssl_mode(keywords, "require"),
            "host=10.0.0.1 dbname=dob sslmode=require"
        );
    }

    #[test]
    fn a_password_from_a_file_joins_a_url_that_has_none() {
        let url = with_password(
            "postgresql://dob@10.0.0.1:5432,10.0.1.1:5432/dob?target_session_attrs=read-write",
            "p@ss w/rd&'",
        );
        let config: postgres::Config = url.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"p@ss w/rd&'"[..]));
        assert_eq!(config.get_hosts().len(), 2);
        assert_eq!(split_password(&url).1.as_deref(), Some("p@ss w/rd&'"));
        let plain = with_password("postgresql://dob@h/dob", "x");
        assert_eq!(plain, "postgresql://dob@h/dob?password=x");
        // One given in the URL wins.
        assert_eq!(
            with_password("postgresql://dob:inurl@h/dob", "x"),
            "postgresql://dob:inurl@h/dob"
        );
        let keywords = with_password("host=h dbname=dob user=dob", "a b");
        let config: postgres::Config = keywords.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"a b"[..]));
    }

    #[test]
    fn the_password_leaves_the_url() {
        let (url, pass) =
            split_password("postgresql://dob:s%40cret@10.0.0.1:5432/dob?sslmode=require");
        assert_eq!(url, "postgresql://dob@10.0.0.1:5432/dob?sslmode=require");
        assert_eq!(pass.as_deref(), Some("s@cret"));
        let (url, pass) = split_password("postgresql://h/db?password=x&sslmode=prefer");
        assert_eq!(url, "postgresql://h/db?sslmode=prefer");
        assert_eq!(pass.as_deref(), Some("x"));
        let (url, pass) = split_password("postgresql://dob@h/db");
        assert_eq!(url, "postgresql://dob@h/db");
        assert_eq!(pass, None);
    }

    #[test]
    fn the_password_leaves_a_keyword_string() {
        let (conninfo, pass) = split_password("host=h password='a b' dbname=dob");
        assert_eq!(conninfo, "host=h dbname=dob");
        assert_eq!(pass.as_deref(), Some("a b"));
    }

    #[test]
    fn another_database_keeps_hosts_and_options() {
        let url = "postgresql://dob@a:5432,b:5432/dob?target_session_attrs=read-write";
        assert_eq!(
            with_database(url, "dob_restore_x"),
            "postgresql://dob@a:5432,b:5432/dob_restore_x?target_session_attrs=read-write"
        );
        assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
        assert_eq!(
            with_database("host=h dbname=dob user=u", "postgres"),
            "host=h user=u dbname=postgres"
        );
    }

    #[test]
    fn database_names_come_from_the_url() {
        assert_eq!(database_name("postgresql://h:1/dob").unwrap(), "dob");
        assert_eq!(
            redacted("postgresql://u:p@h/d"),
            "postgresql://u@h/d (password hidden)"
        );
    }
}
