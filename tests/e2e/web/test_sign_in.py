"""Signing in and out with a session cookie, and the API tokens page."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.conftest import failed, ok
from tests.e2e.web.conftest import PASSWORD, World, screenshot, sign_in


def test_sign_in_with_the_bootstrapped_admin_password(page: Page, world: World):
    password_file = world.server.database.data_dir / "admin-password"
    assert password_file.stat().st_mode & 0o777 == 0o600  # owner-only, like the token file
    password = password_file.read_text().strip()
    assert f"password in {password_file}" in world.server.log()  # the start message says where it is
    page.goto(f"{world.url}/workloads")
    expect(page).to_have_url(f"{world.url}/sign-in")
    screenshot(page, "sign-in")
    sign_in(page, world.url, "admin@localhost", password)
    expect(page).to_have_url(re.compile(r"/workloads"))
    expect(page.get_by_text("admin@localhost")).to_be_visible()
    assert password not in world.server.log()  # never printed or logged


def test_a_failed_sign_in_says_one_generic_thing(page: Page, world: World):
    email = world.user("erin@example.com")
    messages = []
    for who, password in ((email, "wrong password"), ("nobody@example.com", PASSWORD)):
        page.goto(f"{world.url}/sign-in")
        page.get_by_label("Email").fill(who)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        alert = page.get_by_role("alert")
        expect(alert).to_be_visible()
        messages.append(alert.inner_text())
        expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    assert messages[0] == messages[1]
    assert "email or password" in messages[0]
    screenshot(page, "sign-in-failed")


def test_sign_in_returns_to_the_page_asked_for_and_sign_out_ends_the_session(page: Page, world: World):
    project = world.project("return", world.user("frank@example.com"))
    world.submit(project, "waiting-for-frank")
    page.goto(f"{world.url}/workloads?project={project}&name=frank")
    expect(page).to_have_url(re.compile(r"/sign-in\?next="))
    page.get_by_label("Email").fill("frank@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{world.url}/workloads?project={project}&name=frank")
    expect(page.get_by_role("link", name="waiting-for-frank")).to_be_visible()

    cookie = next(c for c in page.context.cookies() if c["name"] == "corral_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{world.url}/sign-in")
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    # The old cookie is worthless: the session row is gone.
    page.context.add_cookies([{**cookie}])
    page.goto(f"{world.url}/workloads")
    expect(page).to_have_url(f"{world.url}/sign-in")


def test_forms_without_the_session_csrf_token_are_refused(page: Page, world: World):
    project = world.project("csrf", world.user("grace@example.com"))
    wid = world.submit(project, "protected")
    sign_in(page, world.url, "grace@example.com")
    for token in ("", "forged"):
        response = page.request.post(f"{world.url}/workloads/{wid}/delete", form={"csrf_token": token})
        assert response.status == 403
        assert "This form has expired" in response.text()
    assert world.detail(wid)["status"] == "Pending"


def test_create_and_revoke_api_tokens(page: Page, world: World):
    sign_in(page, world.url, world.user("heidi@example.com"))
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Expires after (days)").fill("30")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token").inner_text()
    assert secret.startswith("crl_")
    screenshot(page, "api-tokens")
    me = world.admin.get("/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["email"] == "heidi@example.com"

    page.goto(f"{world.url}/tokens")
    expect(page.locator("body")).not_to_contain_text(secret)  # shown once only
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revoke laptop").click()
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    expect(page.get_by_role("row", name=re.compile("laptop"))).to_contain_text("revoked")
    assert world.admin.get("/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_set_password_on_the_command_line_prompts_twice(page: Page, world: World):
    email = world.user("olga@example.com")
    assert "at least 8" in failed(world.cli.invoke("users", "set-password", email, input="short\nshort\n"))
    mismatch = world.cli.invoke("users", "set-password", email, input="new password one\nnew password two\n")
    assert mismatch.exit_code != 0
    ok(world.cli.invoke("users", "set-password", email, input="new password one\nnew password one\n"))
    page.goto(f"{world.url}/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()  # the old password no longer works
    sign_in(page, world.url, email, "new password one")
