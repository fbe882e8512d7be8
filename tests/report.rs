//! `vgmake report` on a project with two built variants of the real stages
//! (a tiny model), then the page in headless Chromium driven through the
//! DevTools protocol: no network request, no console error, the table, the
//! sort, every audio player and piano roll loaded, one loss line per
//! variant, a screenshot that is not blank. Without Chromium the browser
//! half is skipped with a loud message (scripts/test.sh installs it).

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::{Emulation, Network};
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::{Value as Json, json};
use support::Project;

/// The data stages and a tiny model; `fast` differs in one parameter.
fn pipeline(sample_count: usize) -> String {
    support::tiny::pipeline(40, sample_count, 160) + "\n[variants.fast]\ntrain.lr = 0.03\n"
}

#[test]
fn a_report_of_two_variants_in_a_real_browser() {
    let p = Project::new(&pipeline(2));
    p.build(&["--all-variants"]);

    let run = p.run(&["report"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let page = p.path().join("out/report.html");
    assert_eq!(
        PathBuf::from(run.stdout.trim()).canonicalize().unwrap(),
        page.canonicalize().unwrap(),
        "prints the page's path"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("http:") && !html.contains("https:"),
        "no URL to fetch"
    );
    assert!(
        html.contains("src=\"default/sample/sample_001.wav\""),
        "relative into out/"
    );
    assert!(
        html.contains("vgmake build --variant fast"),
        "the reproduce command"
    );

    let embedded = p.run(&["report", "--embed", "-o", "one-file.html", "fast"]);
    assert_eq!(embedded.code, 0, "{}", embedded.stderr);
    let one = std::fs::read_to_string(p.path().join("one-file.html")).unwrap();
    assert!(
        one.contains("src=\"data:audio/wav;base64,UklGR"),
        "the WAV inside"
    );
    assert!(
        one.contains("src=\"data:image/png;base64,iVBOR"),
        "the PNG inside"
    );
    assert!(
        !one.contains("out/") && !one.contains("sample/sample_"),
        "no link out"
    );

    match chromium() {
        Some(chrome) => in_the_browser(&chrome, &page),
        None => eprintln!(
            "\n\n*** SKIPPED the browser half of tests/report.rs: no Chromium (/usr/bin/chromium, or set CHROME). \
             `apt-get install chromium` (scripts/test.sh does) ***\n\n"
        ),
    }

    // An edited pipeline makes both variants out of date, saying why.
    p.write_pipeline(&pipeline(3));
    assert_eq!(p.run(&["report"]).code, 0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<summary>out of date</summary>").count(), 2);
    assert!(html.contains("param sample.count 2 -&gt; 3"), "the why");
}

#[test]
fn an_unknown_variant_is_a_usage_error_with_a_suggestion() {
    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    assert_eq!(p.run(&["report"]).code, 2, "nothing built yet");
    p.build(&[]);
    let run = p.run(&["report", "defualt"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("did you mean `default`"),
        "{}",
        run.stderr
    );
    let ok = p.run(&["report", "-o", "sub/dir/r.html"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(p.path().join("sub/dir/r.html").is_file());
}

fn chromium() -> Option<PathBuf> {
    let named = std::env::var_os("CHROME").map(PathBuf::from);
    named
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from))
        .find(|p| p.is_file())
}

fn in_the_browser(chrome: &Path, page: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let options = LaunchOptions::default_builder()
        .path(Some(chrome.to_path_buf()))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1280, 900)))
        .user_data_dir(Some(profile.path().to_path_buf()))
        .idle_browser_timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let browser = Browser::new(options).expect("Chromium starts");
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(120));
    let requests = Arc::new(Mutex::new(Vec::<String>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let (seen, failed) = (requests.clone(), errors.clone());
    tab.add_event_listener(Arc::new(move |event: &Event| match event {
        Event::NetworkRequestWillBeSent(e) => {
            seen.lock().unwrap().push(e.params.request.url.clone())
        }
        Event::RuntimeExceptionThrown(e) => failed
            .lock()
            .unwrap()
            .push(format!("exception: {:?}", e.params.exception_details.text)),
        Event::RuntimeConsoleAPICalled(e) if format!("{:?}", e.params.Type) == "Error" => failed
            .lock()
            .unwrap()
            .push(format!("console.error: {:?}", e.params.args)),
        Event::LogEntryAdded(e) if format!("{:?}", e.params.entry.level) == "Error" => failed
            .lock()
            .unwrap()
            .push(format!("log: {}", e.params.entry.text)),
        _ => {}
    }))
    .unwrap();
    tab.call_method(serde_json::from_value::<Network::Enable>(json!({})).unwrap())
        .unwrap();
    tab.enable_runtime().unwrap();
    tab.enable_log().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    tab.navigate_to(&url)
        .unwrap()
        .wait_until_navigated()
        .unwrap();

    // Every player and picture loads (waits for the events, no clock).
    let media = eval(
        &tab,
        r#"Promise.all([
            ...[...document.querySelectorAll('audio')].map(a => a.readyState >= 1 ? a.duration
                : new Promise(ok => { a.addEventListener('loadedmetadata', () => ok(a.duration));
                                      a.addEventListener('error', () => ok(-1)); a.load(); })),
            ...[...document.images].map(i => i.complete ? 0 : new Promise(ok => {
                i.addEventListener('load', ok); i.addEventListener('error', ok); }))
        ]).then(() => JSON.stringify({
            audio: [...document.querySelectorAll('audio')].map(a => a.duration),
            images: [...document.images].map(i => i.naturalWidth)
        }))"#,
    );
    let audio = media["audio"].as_array().unwrap();
    // Two variants x two samples, and the reference song once.
    assert_eq!(audio.len(), 5, "{media}");
    assert!(audio.iter().all(|d| d.as_f64().unwrap() > 0.0), "{media}");
    let images = media["images"].as_array().unwrap();
    assert_eq!(images.len(), 5, "{media}");
    assert!(images.iter().all(|w| w.as_u64().unwrap() > 0), "{media}");

    let table = eval(
        &tab,
        r#"JSON.stringify({
            rows: [...document.querySelectorAll('#variants-table tbody tr')].map(r => r.dataset.variant),
            params: [...document.querySelectorAll('#variants-table thead th.param')].map(t => t.textContent),
            losses: [...document.querySelectorAll('figure.line-chart')].map(f =>
                [f.dataset.series, f.querySelectorAll('polyline.series').length])
        })"#,
    );
    assert_eq!(table["rows"], json!(["default", "fast"]), "{table}");
    assert_eq!(table["params"], json!(["train.lr"]), "only what differs");
    assert_eq!(
        table["losses"],
        json!([["train_loss", 2], ["val_loss", 2]]),
        "one line per variant"
    );
    // A header button sorts: descending lr puts `fast` (0.03) first.
    let order = |clicks: usize| {
        eval(
            &tab,
            &format!(
                "{}JSON.stringify([...document.querySelectorAll('#variants-table tbody tr')].map(r => r.dataset.variant))",
                "document.querySelector('#variants-table thead th.param button').click();"
                    .repeat(clicks)
            ),
        )
    };
    assert_eq!(order(1), json!(["default", "fast"]), "ascending");
    assert_eq!(order(1), json!(["fast", "default"]), "descending");

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&shots).unwrap();
    let wide = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(shots.join("report-1280.png"), &wide).unwrap();
    assert!(colours(&wide) > 16, "the screenshot is not blank");
    // On a phone the page does not scroll sideways (the table scrolls in its box).
    tab.call_method(
        serde_json::from_value::<Emulation::SetDeviceMetricsOverride>(json!({
            "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true
        }))
        .unwrap(),
    )
    .unwrap();
    let width = eval(
        &tab,
        "JSON.stringify([document.documentElement.scrollWidth, window.innerWidth])",
    );
    assert!(width[0].as_u64() <= width[1].as_u64(), "{width}");
    let phone = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(shots.join("report-390.png"), &phone).unwrap();
    eprintln!("screenshots in {}", shots.display());

    let requests = requests.lock().unwrap().clone();
    let network: Vec<&String> = requests
        .iter()
        .filter(|u| !u.starts_with("file://") && !u.starts_with("data:"))
        .collect();
    assert!(network.is_empty(), "network requests: {network:?}");
    assert!(requests.len() > 1, "requests were recorded: {requests:?}");
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// Evaluates an expression that returns (or resolves to) a JSON string.
fn eval(tab: &Tab, expression: &str) -> Json {
    let result = tab.evaluate(expression, true).unwrap();
    let text = result
        .value
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no string from {expression}: {:?}", result.description));
    serde_json::from_str(&text).unwrap()
}

/// Distinct colours in a PNG (a blank page has one).
fn colours(png_bytes: &[u8]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let mut seen = std::collections::HashSet::new();
    for px in buf[..info.buffer_size()].chunks(channels) {
        seen.insert(px.to_vec());
        if seen.len() > 1000 {
            break;
        }
    }
    seen.len()
}
