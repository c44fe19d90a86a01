//! The console and the block page in a real browser (headless Chromium over WebDriver, see
//! `dasher_tests::browser`). Without Chromium installed these tests print SKIPPED and pass,
//! except under `CI`. Screenshots of every page visited go to `ui-screenshots/<test>/` in the
//! target directory.

use dasher_tests::TestServer;
use dasher_tests::browser::Browser;

/// The harness itself: a session starts, loads a page served by Dasher, and screenshots it.
#[tokio::test]
async fn harness_loads_a_dasher_page_and_screenshots_it() {
    let Some(browser) = Browser::start("harness").await else { return };
    let s = TestServer::start().await;
    let base = format!("http://{}", s.handle.as_ref().unwrap().addr());
    browser.goto(&format!("{base}/healthz")).await;
    assert!(browser.text().await.contains("\"status\":\"ok\""), "{}", browser.text().await);
    let shot = browser.screenshot("healthz").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 100, "{}", shot.display());
    browser.close().await;
}
