//! Storage paths: `<console>/<game>/<file name>`. Names keep their case but
//! are reduced to portable characters; two songs whose paths would be equal
//! ignoring case (the same file on a case-insensitive file system) get
//! `~2`, `~3`... suffixes, first come first served in page order, so the
//! result is deterministic and safe on every file system.

use std::collections::HashSet;

use url::Url;

/// Longest name component, in bytes (the suffix and extension fit within
/// every common file system's 255-byte limit).
const MAX_COMPONENT: usize = 120;

#[derive(Default)]
pub struct Namer {
    /// Lower-cased paths already handed out.
    taken: HashSet<String>,
}

impl Namer {
    /// A fresh storage path for the song at `url`, in `game` on `console`.
    pub fn assign(&mut self, console: &str, game: &str, url: &Url) -> String {
        let folder = format!("{console}/{}", safe_component(game, "unknown_game"));
        let file = safe_component(&file_name(url), "song.mid");
        let (stem, ext) = split_extension(&file);
        let mut candidate = format!("{folder}/{file}");
        let mut n = 2;
        while !self.taken.insert(candidate.to_lowercase()) {
            candidate = format!("{folder}/{stem}~{n}{ext}");
            n += 1;
        }
        candidate
    }
}

/// The last path segment of `url`, percent-decoded.
fn file_name(url: &Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    percent_encoding::percent_decode_str(last)
        .decode_utf8_lossy()
        .into_owned()
}

/// Keeps ASCII letters, digits and `-.()+`; every run of other characters
/// (underscores included) becomes one `_`. No leading dot (no hidden files, no `..`), bounded length.
pub fn safe_component(raw: &str, fallback: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() || "-.()+".contains(c) {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed = out.trim_matches(|c| c == '_' || c == '.' || c == ' ');
    let mut name = trimmed.to_string();
    if name.len() > MAX_COMPONENT {
        let (stem, ext) = split_extension(&name);
        let keep = MAX_COMPONENT.saturating_sub(ext.len());
        name = format!("{}{ext}", &stem[..keep.min(stem.len())]);
    }
    if name.is_empty() {
        fallback.to_string()
    } else {
        name
    }
}

/// ("name", ".mid") for "name.mid"; ("name", "") without an extension.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= 6 => name.split_at(i),
        _ => (name, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn names_are_decoded_and_made_safe() {
        let mut namer = Namer::default();
        assert_eq!(
            namer.assign(
                "nes",
                "Legend of Zelda, The: Link's Awakening",
                &url("http://h/c/Megaman_3_Wily_Castle_Stages_3_%26_4.mid")
            ),
            "nes/Legend_of_Zelda_The_Link_s_Awakening/Megaman_3_Wily_Castle_Stages_3_4.mid"
        );
        assert_eq!(
            namer.assign(
                "snes",
                "Pokémon (Gold)",
                &url("http://h/c/LoB_%28Overworld%29.mid")
            ),
            "snes/Pok_mon_(Gold)/LoB_(Overworld).mid"
        );
        assert_eq!(
            namer.assign("snes", "..", &url("http://h/c/%2E%2E%2Fetc.mid")),
            "snes/unknown_game/etc.mid"
        );
    }

    #[test]
    fn case_collisions_get_stable_suffixes_and_keep_their_case() {
        let mut namer = Namer::default();
        let a = namer.assign(
            "snes",
            "Shining Force II",
            &url("http://h/c/ShF2-Castle.mid"),
        );
        let b = namer.assign(
            "snes",
            "Shining Force II",
            &url("http://h/c/shf2-castle.mid"),
        );
        let c = namer.assign(
            "snes",
            "Shining Force II",
            &url("http://h/c/SHF2-CASTLE.mid"),
        );
        assert_eq!(a, "snes/Shining_Force_II/ShF2-Castle.mid");
        assert_eq!(b, "snes/Shining_Force_II/shf2-castle~2.mid");
        assert_eq!(c, "snes/Shining_Force_II/SHF2-CASTLE~3.mid");
    }

    #[test]
    fn long_names_are_cut_keeping_the_extension() {
        let long = format!("{}.mid", "x".repeat(300));
        let name = safe_component(&long, "f");
        assert_eq!(name.len(), MAX_COMPONENT);
        assert!(name.ends_with(".mid"));
    }
}
