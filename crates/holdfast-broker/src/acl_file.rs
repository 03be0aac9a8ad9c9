//! The ACL file (`[auth] acl_file`): TOML `[[rule]]` tables, tried in file order, first applicable
//! rule decides, default deny. See docs/security.md.
//!
//! ```toml
//! [[rule]]
//! user = "alice"            # or client_id = "...", or anonymous = true; none of them: every client
//! access = "all"            # publish | subscribe | all
//! topics = ["home/%u/#"]    # %u: user name, %c: client id
//! action = "allow"          # allow (default) | deny
//! ```

use std::ops::Range;
use std::path::Path;

use holdfast_core::acl::{Access, Acl, Rule, Subject};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("cannot read ACL file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {key}: {why}")]
    Invalid {
        path: String,
        line: usize,
        key: String,
        why: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    user: Option<String>,
    client_id: Option<String>,
    anonymous: Option<bool>,
    access: Spanned<String>,
    topics: Spanned<Vec<Spanned<String>>>,
    action: Option<Spanned<String>>,
}

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

pub fn load(path: &Path) -> Result<Acl, AclError> {
    let text = std::fs::read_to_string(path).map_err(|source| AclError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

pub fn parse(text: &str, origin: &str) -> Result<Acl, AclError> {
    let invalid = |span: Range<usize>, key: String, why: String| AclError::Invalid {
        path: origin.to_string(),
        line: line_of(text, span),
        key,
        why,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        invalid(span, "rule".into(), e.message().to_string())
    })?;
    let mut rules = Vec::new();
    for (i, entry) in raw.rule.into_iter().enumerate() {
        let table = entry.span();
        let r = entry.into_inner();
        let key = |k: &str| format!("rule[{i}].{k}");
        let subject = match (r.user, r.client_id, r.anonymous) {
            (None, None, None | Some(false)) => Subject::All,
            (Some(u), None, None | Some(false)) => Subject::User(u),
            (None, Some(c), None | Some(false)) => Subject::ClientId(c),
            (None, None, Some(true)) => Subject::Anonymous,
            _ => {
                return Err(invalid(
                    table,
                    key("user"),
                    "give at most one of user, client_id, anonymous = true".into(),
                ))
            }
        };
        let access = match r.access.get_ref().as_str() {
            "publish" => Access::Publish,
            "subscribe" => Access::Subscribe,
            "all" => Access::Both,
            other => {
                return Err(invalid(
                    r.access.span(),
                    key("access"),
                    format!("\"{other}\": use \"publish\", \"subscribe\" or \"all\""),
                ))
            }
        };
        let allow = match r.action.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("allow") => true,
            Some("deny") => false,
            Some(other) => {
                let span = r.action.as_ref().map_or(table.clone(), |a| a.span());
                return Err(invalid(
                    span,
                    key("action"),
                    format!("\"{other}\": use \"allow\" or \"deny\""),
                ));
            }
        };
        if r.topics.get_ref().is_empty() {
            return Err(invalid(
                r.topics.span(),
                key("topics"),
                "needs at least one topic filter".into(),
            ));
        }
        for t in r.topics.into_inner() {
            // %u and %c stand for one topic level; check the filter with a placeholder.
            let probe = t.get_ref().replace("%u", "u").replace("%c", "c");
            if let Err(why) = holdfast_proto::topic::validate_topic_filter(&probe) {
                return Err(invalid(
                    t.span(),
                    key("topics"),
                    format!("\"{}\" is not a valid topic filter: {why}", t.get_ref()),
                ));
            }
            rules.push(Rule {
                subject: subject.clone(),
                access,
                filter: t.into_inner(),
                allow,
            });
        }
    }
    Ok(Acl::new(rules))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_in_order() {
        let acl = parse(
            "[[rule]]\nuser = \"a\"\naccess = \"all\"\ntopics = [\"x/%u/#\", \"y\"]\n\
             [[rule]]\nanonymous = true\naccess = \"subscribe\"\ntopics = [\"p/#\"]\naction = \"deny\"\n",
            "acl.toml",
        )
        .unwrap();
        assert_eq!(acl.rules.len(), 3);
        assert_eq!(acl.rules[0].subject, Subject::User("a".into()));
        assert!(!acl.rules[2].allow);
        assert_eq!(acl.rules[2].subject, Subject::Anonymous);
    }

    #[test]
    fn the_example_in_docs_security_md_parses_and_decides() {
        let doc = include_str!("../../../docs/security.md");
        let start = doc.find("# /etc/holdfast/acl.toml").expect("ACL example");
        let block = &doc[start..start + doc[start..].find("```").unwrap()];
        let acl = parse(block, "docs/security.md").unwrap();
        let who = |u: Option<&'static str>, c: &'static str| holdfast_core::acl::Identity {
            username: u,
            client_id: c,
        };
        assert!(acl.may_subscribe(who(Some("auditor"), "a"), "audit/#"));
        assert!(!acl.may_subscribe(who(Some("bob"), "b"), "audit/x"));
        assert!(
            !acl.may_subscribe(who(Some("bob"), "b"), "#"),
            "# overlaps the deny"
        );
        assert!(acl.may_publish(who(Some("bob"), "b"), "users/bob/x"));
        assert!(acl.may_publish(who(None, "dev1"), "devices/dev1/status"));
        assert!(acl.may_subscribe(who(None, "x"), "public/news"));
        assert!(!acl.may_subscribe(who(Some("bob"), "b"), "$SYS/#"));
        assert!(acl.may_subscribe(who(Some("ops"), "o"), "$SYS/#"));
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = parse(
            "[[rule]]\naccess = \"all\"\ntopics = [\"a/#/b\"]\n",
            "acl.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3") && e.contains("rule[0].topics"), "{e}");
        let e = parse(
            "[[rule]]\naccess = \"read\"\ntopics = [\"a\"]\n",
            "acl.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 2") && e.contains("access"), "{e}");
        let e = parse("[[rule]]\naccess = \"all\"\ntopic = [\"a\"]\n", "acl.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
    }
}
