//! The few calls of the EC2 Query API that the takeover needs to isolate the old
//! region (see [`crate::failover::isolation`]): a request signed with AWS Signature
//! Version 4, a bounded wait and a bounded answer, and the answer's XML as a small tree.
//!
//! `rust-s3` signs S3 requests only, and the AWS SDK would bring an async runtime into
//! blocking binaries for five calls; the signature is the documented algorithm, checked
//! against AWS's test suite and botocore in the tests below.

use crate::{Error, Result};
use hmac::{Hmac, Mac};
use s3::creds::Credentials;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::time::Duration;

/// The EC2 API version the calls are written against.
const API_VERSION: &str = "2016-11-15";
/// Deadline for one call, connect to the last byte of the answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An answer larger than this is refused rather than read: the calls here describe a
/// handful of subnets and instances.
const MAX_ANSWER_BYTES: u64 = 4 << 20;
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// One region's EC2 API.
pub struct Ec2 {
    region: String,
    /// `https://ec2.<region>.amazonaws.com`, or a test server's address.
    endpoint: String,
    credentials: Credentials,
}

impl Ec2 {
    /// `endpoint` overrides the region's public endpoint (a local test server).
    pub fn new(region: &str, endpoint: Option<&str>, credentials: Credentials) -> Ec2 {
        let endpoint = endpoint.map_or_else(
            || format!("https://ec2.{region}.amazonaws.com"),
            |e| e.trim_end_matches('/').to_owned(),
        );
        Ec2 {
            region: region.to_owned(),
            endpoint,
            credentials,
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Calls `action` with `params` (already flattened: `Filter.1.Name`, ...) and returns
    /// the answer's root element. An error answer is an [`Error`] carrying EC2's code and
    /// message.
    pub fn call(&self, action: &str, params: &[(String, String)]) -> Result<Node> {
        let what = || format!("EC2 {action} in {}", self.region);
        let body = form_body(action, params);
        let now = jiff::Timestamp::now();
        let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let host = host_of(&self.endpoint)
            .ok_or_else(|| Error::other(format!("{}: bad endpoint {}", what(), self.endpoint)))?;
        let access = self.credentials.access_key.as_deref().unwrap_or_default();
        let secret = self.credentials.secret_key.as_deref().unwrap_or_default();
        if access.is_empty() || secret.is_empty() {
            return Err(Error::other(format!(
                "{}: no AWS credentials (environment, profile or EC2 instance profile)",
                what()
            )));
        }
        let token = session_token(&self.credentials);
        let authorization = authorization(
            &Signing {
                access_key: access,
                secret_key: secret,
                region: &self.region,
                service: "ec2",
                amz_date: &amz_date,
                security_token: token,
            },
            host,
            CONTENT_TYPE,
            &body,
        );
        let mut request = attohttpc::post(format!("{}/", self.endpoint))
            .header("content-type", CONTENT_TYPE)
            .header("x-amz-date", &amz_date)
            .header("authorization", authorization)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        if let Some(token) = token {
            request = request.header("x-amz-security-token", token);
        }
        let response = request
            .text(body)
            .send()
            .map_err(|e| Error::with_source(what(), e))?;
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        let (_, _, reader) = response.split();
        reader
            .take(MAX_ANSWER_BYTES + 1)
            .read_to_end(&mut answer)
            .map_err(|e| Error::with_source(format!("{}: reading the answer", what()), e))?;
        if answer.len() as u64 > MAX_ANSWER_BYTES {
            return Err(Error::other(format!(
                "{}: the answer is larger than {MAX_ANSWER_BYTES} bytes",
                what()
            )));
        }
        let text = String::from_utf8_lossy(&answer);
        let root = parse_xml(&text).map_err(|e| {
            Error::other(format!("{}: HTTP {status}, unreadable answer: {e}", what()))
        })?;
        if status != 200 {
            let error = root.find(&["Errors", "Error"]);
            let code = error.and_then(|e| e.text_of("Code")).unwrap_or("?");
            let message = error.and_then(|e| e.text_of("Message")).unwrap_or("");
            return Err(Error::other(format!(
                "{}: HTTP {status}, {code}: {message}",
                what()
            )));
        }
        Ok(root)
    }
}

/// The token temporary credentials come with: a session token (the environment's
/// `AWS_SESSION_TOKEN`, an assumed role's) or the instance profile's security token, as
/// rust-s3 picks them. Signed and sent as `x-amz-security-token`.
fn session_token(credentials: &Credentials) -> Option<&str> {
    credentials
        .session_token
        .as_deref()
        .or(credentials.security_token.as_deref())
}

/// `Filter.N.Name` / `Filter.N.Value.M` parameters, numbered from `first`.
pub fn filter_params(first: usize, filters: &[(&str, &[&str])]) -> Vec<(String, String)> {
    let mut params = Vec::new();
    for (i, (name, values)) in filters.iter().enumerate() {
        let n = first + i;
        params.push((format!("Filter.{n}.Name"), (*name).to_owned()));
        for (j, value) in values.iter().enumerate() {
            params.push((format!("Filter.{n}.Value.{}", j + 1), (*value).to_owned()));
        }
    }
    params
}

/// `Name.N` parameters for a list (`InstanceId.1`, `InstanceId.2`, ...).
pub fn list_params(name: &str, values: &[String]) -> Vec<(String, String)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("{name}.{}", i + 1), v.clone()))
        .collect()
}

fn form_body(action: &str, params: &[(String, String)]) -> String {
    let mut body = format!("Action={}&Version={API_VERSION}", encode(action));
    for (name, value) in params {
        body.push('&');
        body.push_str(&encode(name));
        body.push('=');
        body.push_str(&encode(value));
    }
    body
}

/// RFC 3986 percent-encoding, as SigV4 wants it: everything but unreserved characters.
fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `host[:port]` of an `http(s)://host[:port][/...]` endpoint: the Host header the
/// HTTP client sends, which the signature covers. A default port is left out, as the
/// client leaves it out.
fn host_of(endpoint: &str) -> Option<&str> {
    let (scheme, rest) = endpoint.split_once("://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    Some(authority.strip_suffix(default_port).unwrap_or(authority))
}

struct Signing<'a> {
    access_key: &'a str,
    secret_key: &'a str,
    region: &'a str,
    service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`
    amz_date: &'a str,
    security_token: Option<&'a str>,
}

fn hex_sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The `Authorization` header of a form POST to `/` (Signature Version 4).
fn authorization(s: &Signing<'_>, host: &str, content_type: &str, body: &str) -> String {
    let date = &s.amz_date[..8];
    let mut headers = vec![
        ("content-type", content_type),
        ("host", host),
        ("x-amz-date", s.amz_date),
    ];
    if let Some(token) = s.security_token {
        headers.push(("x-amz-security-token", token));
    }
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex_sha256(body.as_bytes())
    );
    let scope = format!("{date}/{}/{}/aws4_request", s.region, s.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        s.amz_date,
        hex_sha256(canonical_request.as_bytes())
    );
    let key = [s.region, s.service, "aws4_request"].iter().fold(
        hmac(format!("AWS4{}", s.secret_key).as_bytes(), date.as_bytes()),
        |k, part| hmac(&k, part.as_bytes()),
    );
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        s.access_key
    )
}

/// An XML element: its local name, its text and its child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the child `name`, when there is one.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The first element down the path of child names.
    pub fn find(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |node, name| node.child(name))
    }

    /// The `item` elements of the set `name` (EC2's lists: `<subnetSet><item>...`).
    pub fn items(&self, name: &str) -> impl Iterator<Item = &Node> {
        self.child(name)
            .into_iter()
            .flat_map(|set| set.children.iter().filter(|c| c.name == "item"))
    }
}

/// How deep an answer may nest: EC2's answers are a few levels deep.
const MAX_DEPTH: usize = 32;

/// Parses a whole document into its root element.
pub fn parse_xml(text: &str) -> std::result::Result<Node, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let open = |e: &quick_xml::events::BytesStart<'_>| Node {
        name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
        ..Node::default()
    };
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} elements"));
                }
                stack.push(open(&e));
            }
            Event::Empty(e) => {
                let node = open(&e);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Text(e) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&e.decode().map_err(|e| e.to_string())?);
                }
            }
            Event::CData(e) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&e));
                }
            }
            Event::GeneralRef(e) => {
                let resolved = match e.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c,
                    None => match e.decode().map_err(|e| e.to_string())?.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => return Err(format!("unknown entity &{other};")),
                    },
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push(resolved);
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("an end tag without a start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Eof => return Err("no root element".into()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example<'a>(token: Option<&'a str>) -> Signing<'a> {
        Signing {
            access_key: "AKIDEXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "service",
            amz_date: "20150830T123600Z",
            security_token: token,
        }
    }

    fn signature_of(header: &str) -> &str {
        header.rsplit("Signature=").next().unwrap()
    }

    #[test]
    fn signatures_match_aws_and_botocore() {
        // AWS's Signature Version 4 test suite, "post-x-www-form-urlencoded".
        let header = authorization(
            &example(None),
            "example.amazonaws.com",
            "application/x-www-form-urlencoded",
            "Param1=value1",
        );
        assert_eq!(
            header,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
        // Our own requests (a charset, a session token, a port in the host), signed by
        // botocore's SigV4Auth with the same inputs.
        let body = "Action=DescribeSubnets&Version=2016-11-15";
        let with_token = authorization(
            &example(Some("tok/en+1")),
            "example.amazonaws.com",
            CONTENT_TYPE,
            body,
        );
        assert!(
            with_token.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,")
        );
        assert_eq!(
            signature_of(&with_token),
            "316d2c61c61559818d4151695a5f1059780194d4fcbab6416be72272a1567aa8"
        );
        let with_port = authorization(&example(None), "10.0.0.1:5000", CONTENT_TYPE, body);
        assert_eq!(
            signature_of(&with_port),
            "2c0057996e392b14c561c99c8d131984b84474fee0b356b630912853d88c445a"
        );
    }

    #[test]
    fn temporary_credentials_send_their_token() {
        let with = |session: Option<&str>, security: Option<&str>| {
            Credentials::new(Some("a"), Some("b"), security, session, None).unwrap()
        };
        assert_eq!(
            session_token(&with(Some("s"), None)).map(str::to_owned),
            Some("s".into())
        );
        assert_eq!(
            session_token(&with(None, Some("t"))).map(str::to_owned),
            Some("t".into())
        );
        assert_eq!(
            session_token(&with(Some("s"), Some("t"))).map(str::to_owned),
            Some("s".into())
        );
        assert_eq!(session_token(&with(None, None)), None);
    }

    #[test]
    fn the_body_and_the_host_are_what_the_signature_covers() {
        assert_eq!(
            form_body("DescribeSubnets", &filter_params(1, &[("tag:dob:fence-group", &["a b"])])),
            "Action=DescribeSubnets&Version=2016-11-15&Filter.1.Name=tag%3Adob%3Afence-group&Filter.1.Value.1=a%20b"
        );
        assert_eq!(
            host_of("https://ec2.eu-west-1.amazonaws.com"),
            Some("ec2.eu-west-1.amazonaws.com")
        );
        assert_eq!(host_of("http://10.0.0.1:5000/"), Some("10.0.0.1:5000"));
        assert_eq!(host_of("http://h:80"), Some("h"));
        assert_eq!(host_of("ftp://h"), None);
        assert_eq!(
            list_params("InstanceId", &["i-1".into(), "i-2".into()]),
            vec![
                ("InstanceId.1".to_owned(), "i-1".to_owned()),
                ("InstanceId.2".to_owned(), "i-2".to_owned())
            ]
        );
    }

    #[test]
    fn answers_parse_into_a_tree_and_errors_into_code_and_message() {
        let root = parse_xml(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeSubnetsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r</requestId>
  <subnetSet><item><subnetId>subnet-1</subnetId></item><item><subnetId>subnet-2</subnetId><tagSet/></item></subnetSet>
</DescribeSubnetsResponse>"#,
        )
        .unwrap();
        let ids: Vec<_> = root
            .items("subnetSet")
            .filter_map(|i| i.text_of("subnetId"))
            .collect();
        assert_eq!(ids, ["subnet-1", "subnet-2"]);
        let error = parse_xml(
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>a &amp; b &#60;</Message></Error></Errors></Response>",
        )
        .unwrap();
        let e = error.find(&["Errors", "Error"]).unwrap();
        assert_eq!(e.text_of("Code"), Some("UnauthorizedOperation"));
        assert_eq!(e.text_of("Message"), Some("a & b <"));
        assert!(parse_xml("").is_err());
        assert!(parse_xml(&"<a>".repeat(100)).is_err(), "too deep");
    }
}
