//! Topic name and filter rules (MQTT 5.0 section 4.7, 3.1.1 section 4.7) and shared subscriptions (4.8.2).

/// Longest topic or filter: UTF-8 strings are length-prefixed with 16 bits [MQTT-4.7.3-3].
pub const MAX_TOPIC_LEN: usize = 65_535;

/// A topic name as used in PUBLISH: at least one character, no wildcards, no U+0000.
pub fn validate_topic_name(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        return Err("topic name is empty"); // [MQTT-4.7.3-1]
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err("topic name longer than 65535 bytes");
    }
    if topic.contains(['+', '#']) {
        return Err("topic name contains a wildcard"); // [MQTT-3.3.2-2]
    }
    if topic.contains('\0') {
        return Err("topic name contains U+0000"); // [MQTT-4.7.3-2]
    }
    Ok(())
}

/// A topic filter as used in SUBSCRIBE/UNSUBSCRIBE, including `$share/...` filters.
pub fn validate_topic_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("topic filter is empty"); // [MQTT-4.7.3-1]
    }
    if filter.len() > MAX_TOPIC_LEN {
        return Err("topic filter longer than 65535 bytes");
    }
    if filter.contains('\0') {
        return Err("topic filter contains U+0000");
    }
    let filter = match parse_shared(filter) {
        Some(Ok((_, f))) => f,
        Some(Err(why)) => return Err(why),
        None => filter,
    };
    validate_plain_filter(filter)
}

fn validate_plain_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("topic filter is empty");
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') {
            // [MQTT-4.7.1-1] '#' alone and last.
            if level != "#" || levels.peek().is_some() {
                return Err("'#' must be the last level and alone in it");
            }
        } else if level.contains('+') && level != "+" {
            return Err("'+' must occupy a whole level"); // [MQTT-4.7.1-2]
        }
    }
    Ok(())
}

/// Split `$share/{ShareName}/{filter}`. `None` when the filter is not a shared subscription,
/// `Some(Err)` when it starts with `$share/` but is malformed [MQTT-4.8.2-1] [MQTT-4.8.2-2].
pub fn parse_shared(filter: &str) -> Option<Result<(&str, &str), &'static str>> {
    let rest = filter.strip_prefix("$share/")?;
    let Some((group, inner)) = rest.split_once('/') else {
        return Some(Err("shared subscription without a topic filter"));
    };
    if group.is_empty() {
        return Some(Err("shared subscription with an empty share name"));
    }
    if group.contains(['+', '#']) {
        return Some(Err("share name contains a wildcard"));
    }
    if inner.is_empty() {
        return Some(Err("shared subscription with an empty topic filter"));
    }
    if let Err(why) = validate_plain_filter(inner) {
        return Some(Err(why));
    }
    Some(Ok((group, inner)))
}

/// Does `filter` (not shared) match `topic`? Wildcards at the first level do not match topics that
/// start with `$` [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True if the filter contains `+` or `#`.
pub fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test] // [MQTT-4.7.1-1] [MQTT-4.7.1-2]
    fn filter_wildcards_must_fill_levels() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/",
            "a//b",
            "sport/tennis/#",
            "$SYS/#",
        ] {
            assert!(validate_topic_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "a/b+", "#/a", "a/\0"] {
            assert!(validate_topic_filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test] // [MQTT-3.3.2-2] [MQTT-4.7.3-1]
    fn topic_names_have_no_wildcards() {
        assert!(validate_topic_name("a/b").is_ok());
        assert!(validate_topic_name("/").is_ok());
        for bad in ["", "a/+", "#", "a\0b"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test] // [MQTT-4.7.2-1]
    fn dollar_topics_not_matched_by_leading_wildcard() {
        assert!(!matches("#", "$SYS/uptime"));
        assert!(!matches("+/uptime", "$SYS/uptime"));
        assert!(matches("$SYS/#", "$SYS/uptime"));
        assert!(matches("$SYS/+", "$SYS/uptime"));
    }

    #[test] // MQTT 5.0 section 4.7.1.2: "sport/#" also matches "sport"
    fn matching_rules() {
        assert!(matches("sport/#", "sport"));
        assert!(matches("sport/tennis/#", "sport/tennis/player1/ranking"));
        assert!(matches("sport/+", "sport/"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test] // [MQTT-4.8.2-1] [MQTT-4.8.2-2]
    fn shared_subscription_syntax() {
        assert_eq!(parse_shared("$share/g/a/+"), Some(Ok(("g", "a/+"))));
        assert_eq!(parse_shared("a/b"), None);
        assert!(matches!(parse_shared("$share//a"), Some(Err(_))));
        assert!(matches!(parse_shared("$share/g"), Some(Err(_))));
        assert!(matches!(parse_shared("$share/g+/a"), Some(Err(_))));
        assert!(matches!(parse_shared("$share/g/"), Some(Err(_))));
    }
}
