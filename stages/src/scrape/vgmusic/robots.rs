//! robots.txt (RFC 9309): the group for our user agent, `Allow`/`Disallow`
//! rules with `*` and `$`, longest match wins, `Allow` wins a tie. Also reads
//! the common `Crawl-delay` extension.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    allow: bool,
    pattern: String,
}

/// The rules that apply to us.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Robots {
    rules: Vec<Rule>,
    crawl_delay: Option<Duration>,
    /// Why robots.txt could not be fetched, when nothing is allowed for
    /// that reason.
    unreachable: Option<String>,
}

#[derive(Default)]
struct Group {
    agents: Vec<String>,
    rules: Vec<Rule>,
    crawl_delay: Option<Duration>,
}

impl Robots {
    /// Everything allowed (robots.txt missing: 4xx).
    pub fn allow_all() -> Self {
        Robots::default()
    }

    /// Nothing allowed (robots.txt unreachable: 5xx or network failure).
    pub fn disallow_all() -> Self {
        Robots {
            rules: vec![Rule {
                allow: false,
                pattern: "/".into(),
            }],
            crawl_delay: None,
            unreachable: None,
        }
    }

    /// Nothing allowed because robots.txt could not be fetched (`why`: the
    /// 5xx or network failure), as RFC 9309 asks.
    pub fn unreachable(why: String) -> Self {
        Robots {
            unreachable: Some(why),
            ..Robots::disallow_all()
        }
    }

    /// Why robots.txt could not be fetched, if that is why nothing is allowed.
    pub fn unreachable_reason(&self) -> Option<&str> {
        self.unreachable.as_deref()
    }

    /// The rules of `text` for the crawler whose User-Agent is `user_agent`
    /// (matched by its product token, the part before the first `/`).
    pub fn parse(text: &str, user_agent: &str) -> Self {
        let token = product_token(user_agent);
        let groups = groups(text);
        let ours: Vec<&Group> = groups
            .iter()
            .filter(|g| g.agents.iter().any(|a| *a == token))
            .collect();
        let chosen = if ours.is_empty() {
            groups
                .iter()
                .filter(|g| g.agents.iter().any(|a| a == "*"))
                .collect()
        } else {
            ours
        };
        Robots {
            rules: chosen.iter().flat_map(|g| g.rules.clone()).collect(),
            crawl_delay: chosen.iter().filter_map(|g| g.crawl_delay).max(),
            unreachable: None,
        }
    }

    /// Whether `path` (the URL's path plus `?query`, percent-encoded as
    /// sent) may be fetched.
    pub fn allows(&self, path: &str) -> bool {
        let mut best: Option<(usize, bool)> = None;
        for rule in &self.rules {
            if matches(&rule.pattern, path) {
                let len = rule.pattern.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, rule.allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }

    /// The site's requested pause between requests, if any.
    pub fn crawl_delay(&self) -> Option<Duration> {
        self.crawl_delay
    }
}

fn product_token(user_agent: &str) -> String {
    user_agent
        .split(['/', ' '])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn groups(text: &str) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    // A `User-agent` line right after another one (or at the start) extends
    // the current group; after a rule it starts a new group.
    let mut in_agents = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        match key.as_str() {
            "user-agent" => {
                if !in_agents {
                    groups.push(Group::default());
                    in_agents = true;
                }
                let agent = value.to_ascii_lowercase();
                groups.last_mut().unwrap().agents.push(agent);
            }
            "allow" | "disallow" => {
                in_agents = false;
                let Some(group) = groups.last_mut() else {
                    continue;
                };
                // An empty Disallow means "allow everything": no rule.
                if !value.is_empty() {
                    group.rules.push(Rule {
                        allow: key == "allow",
                        pattern: value.to_string(),
                    });
                }
            }
            "crawl-delay" => {
                in_agents = false;
                if let (Some(group), Ok(secs)) = (groups.last_mut(), value.parse::<f64>())
                    && secs.is_finite()
                    && secs >= 0.0
                {
                    group.crawl_delay = Some(Duration::from_secs_f64(secs.min(60.0)));
                }
            }
            _ => {}
        }
    }
    groups
}

/// Matches a robots pattern (`*` = any run, a final `$` = end of path)
/// against the start of `path`.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            if !path.starts_with(part) {
                return false;
            }
            pos = part.len();
        } else if i == parts.len() - 1 && anchored {
            // The last literal must sit at the very end.
            return path.len() >= pos + part.len() && path.ends_with(part);
        } else {
            match path[pos..].find(part) {
                Some(found) => pos += found + part.len(),
                None => return false,
            }
        }
    }
    !anchored || pos == path.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UA: &str = "vgmake/0.1 (research scraper)";

    #[test]
    fn longest_match_wins_and_allow_wins_a_tie() {
        let robots = Robots::parse(
            "User-agent: *\nDisallow: /music/\nAllow: /music/console/nintendo/\n\
             Disallow: /music/console/nintendo/snes/secret\nAllow: /tie\nDisallow: /tie\n",
            UA,
        );
        assert!(robots.allows("/"));
        assert!(!robots.allows("/music/other/x.mid"));
        assert!(robots.allows("/music/console/nintendo/nes/a.mid"));
        assert!(!robots.allows("/music/console/nintendo/snes/secret_song.mid"));
        assert!(robots.allows("/tie"));
    }

    #[test]
    fn our_group_beats_the_star_group_and_groups_merge() {
        let text = "User-agent: *\nDisallow: /\n\n\
                    User-agent: other\nUser-agent: VGMake\nDisallow: /private/\n\
                    Crawl-delay: 2.5\n\nUser-agent: vgmake\nDisallow: /tmp/\n";
        let robots = Robots::parse(text, UA);
        assert!(robots.allows("/music/"));
        assert!(!robots.allows("/private/a"));
        assert!(!robots.allows("/tmp/a"));
        assert_eq!(robots.crawl_delay(), Some(Duration::from_millis(2500)));
        let star = Robots::parse(text, "somebot/1.0");
        assert!(!star.allows("/music/"));
    }

    #[test]
    fn wildcards_anchors_and_empty_disallow() {
        let robots = Robots::parse(
            "User-agent: *\nDisallow: /*.php$\nDisallow: /a*/b\nDisallow:\n",
            UA,
        );
        assert!(!robots.allows("/index.php"));
        assert!(robots.allows("/index.php?x=1"));
        assert!(!robots.allows("/abc/b/c"));
        assert!(robots.allows("/b/a"));
        assert!(Robots::parse("User-agent: *\nDisallow:\n", UA).allows("/x"));
        assert!(Robots::parse("", UA).allows("/x"));
        assert!(!Robots::disallow_all().allows("/robots-free"));
    }

    #[test]
    fn comments_and_junk_lines_are_ignored() {
        let robots = Robots::parse(
            "# hello\nUser-agent: * # everyone\nnonsense line\nDisallow: /x # no\n",
            UA,
        );
        assert!(!robots.allows("/x/y"));
        assert!(robots.allows("/y"));
    }
}
