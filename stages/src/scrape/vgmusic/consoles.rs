//! Where each console's listing page lives on vgmusic.com, relative to the
//! site root (`base_url`). The trailing slash matters: song hrefs on a page
//! are relative to it.
//!
//! | key       | path                              |
//! |-----------|-----------------------------------|
//! | `nes`     | `music/console/nintendo/nes/`     |
//! | `snes`    | `music/console/nintendo/snes/`    |
//! | `gameboy` | `music/console/nintendo/gameboy/` |
//! | `tg16`    | `music/console/nec/tg16/`         |
//! | `genesis` | `music/console/sega/genesis/`     |

use url::Url;

/// (console key, listing path relative to the site root).
pub const CONSOLE_PATHS: &[(&str, &str)] = &[
    ("nes", "music/console/nintendo/nes/"),
    ("snes", "music/console/nintendo/snes/"),
    ("gameboy", "music/console/nintendo/gameboy/"),
    ("tg16", "music/console/nec/tg16/"),
    ("genesis", "music/console/sega/genesis/"),
];

/// The listing path of `console`, if known.
pub fn listing_path(console: &str) -> Option<&'static str> {
    CONSOLE_PATHS
        .iter()
        .find(|(key, _)| *key == console)
        .map(|(_, path)| *path)
}

/// Parses `base_url` as the site root, adding the trailing slash that makes
/// relative joins land below it.
pub fn site_root(base_url: &str) -> Result<Url, String> {
    let mut root = Url::parse(base_url).map_err(|e| format!("`base_url` {base_url:?}: {e}"))?;
    if !matches!(root.scheme(), "http" | "https") {
        return Err(format!(
            "`base_url` {base_url:?}: only http and https are supported"
        ));
    }
    if root.host_str().is_none() {
        return Err(format!("`base_url` {base_url:?} has no host"));
    }
    if !root.path().ends_with('/') {
        let path = format!("{}/", root.path());
        root.set_path(&path);
    }
    root.set_query(None);
    root.set_fragment(None);
    Ok(root)
}

/// The listing URL of `console` below `root`.
pub fn listing_url(root: &Url, console: &str) -> Option<Url> {
    root.join(listing_path(console)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_console_parameter_choice_has_a_path() {
        for console in crate::scrape::CONSOLES {
            assert!(listing_path(console).is_some(), "{console}");
        }
    }

    #[test]
    fn bad_parameters_are_refused_before_running() {
        use crate::api::{Params, Value};
        let kind = crate::scrape::ScrapeKind;
        let with = |extra: Vec<(&str, Value)>| {
            let mut overrides = vec![("source", Value::from("vgmusic"))];
            overrides.extend(extra);
            Params::with(&kind, &overrides)
        };
        assert!(with(vec![]).is_ok());
        let err = with(vec![("base_url", "vgmusic.com".into())]).unwrap_err();
        assert!(err.contains("base_url"), "{err}");
        let err = with(vec![("consoles", Value::Array(vec![]))]).unwrap_err();
        assert!(err.contains("consoles"), "{err}");
        let err = with(vec![("consoles", Value::Array(vec!["n64".into()]))]).unwrap_err();
        assert!(err.contains("consoles"), "{err}");
    }

    #[test]
    fn listing_urls_keep_the_trailing_slash_under_a_sub_folder() {
        let root = site_root("http://127.0.0.1:8080/mirror").unwrap();
        assert_eq!(
            listing_url(&root, "snes").unwrap().as_str(),
            "http://127.0.0.1:8080/mirror/music/console/nintendo/snes/"
        );
        assert!(site_root("ftp://example.com/").is_err());
        assert!(site_root("not a url").is_err());
    }
}
