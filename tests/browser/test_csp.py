"""The browser enforces the app's Content-Security-Policy, and the report the shared
``page`` fixture relies on names a violation (so a template that breaks the policy
fails every browser test that opens it)."""
from app.security import PAGE_POLICY
from conftest import ADMIN_PASSWORD, ADMIN_USERNAME, REPORT_CSP_VIOLATIONS


def test_a_style_attribute_is_blocked_and_reported(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    tab = context.new_page()
    try:
        response = tab.goto("/login")
        assert response.headers["content-security-policy"] == PAGE_POLICY
        tab.fill("#username", ADMIN_USERNAME)
        tab.fill("#password", ADMIN_PASSWORD)
        tab.click("main button[type=submit]")
        tab.wait_for_url("**/")
        with tab.expect_console_message(lambda msg: msg.text.startswith("CSP violation")) as report:
            tab.evaluate("""() => {
                const box = document.createElement("div");
                box.innerHTML = '<p style="color: red">inline style</p>';
                document.body.appendChild(box);
            }""")
        assert "style-src" in report.value.text
        color = tab.evaluate("() => getComputedStyle(document.querySelector('p[style]')).color")
        assert color != "rgb(255, 0, 0)"
    finally:
        context.close()


def test_the_rq_dashboard_works_under_its_own_policy(signed_in):
    """Its inline scripts and templates run (the queue table fills) with no violation
    reported (the ``page`` fixture fails the test on one)."""
    page = signed_in
    page.goto("/ops/rq/")
    page.wait_for_selector("#queues tbody tr")
