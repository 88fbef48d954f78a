"""Drives the replenish console in Debian's headless Chromium through WebDriver
(selenium + chromedriver), as two people: a csr signs in, finds an account, activates
it and asks for a goodwill adjustment; a supervisor, in a browser session of their own,
approves it and finds the approval on the audit page. Prints what it saw as JSON; the
Rust test (tests/browser.rs) checks it against the switch.

usage: console_flow.py BASE ACCOUNT MIN PASSWORD SCREENSHOT
"""

import json
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

BASE, ACCOUNT, MIN, PASSWORD, SCREENSHOT = sys.argv[1:6]


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--disable-gpu"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait(driver):
    # A form that reloads the page replaces the elements being watched: a lookup that
    # fails while the page is being replaced is tried again.
    return WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,))


def text_of(driver, element_id):
    """The text of an element, read in one script call (no element handle to go stale)."""
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent.trim() : ''",
        element_id)


def sign_in(driver, user):
    driver.get(BASE + "/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button").click()
    wait(driver).until(seen.presence_of_element_located((By.ID, "search")))


def result_of(driver, form):
    script = "return document.querySelector(arguments[0]).textContent.trim()"
    selector = f"#{form} [data-result]"
    wait(driver).until(lambda d: d.execute_script(script, selector))
    return driver.execute_script(script, selector)


seen_by = {}
csr = browser()
supervisor = browser()
try:
    # The csr: search, open the account, activate it with a MIN.
    sign_in(csr, "ana")
    seen_by["cookie_http_only"] = all(c.get("httpOnly") for c in csr.get_cookies())
    seen_by["cookie_visible_to_script"] = csr.execute_script("return document.cookie")
    csr.find_element(By.ID, "q").send_keys(ACCOUNT)
    csr.find_element(By.CSS_SELECTOR, "#search button").click()
    link = wait(csr).until(seen.presence_of_element_located((By.CSS_SELECTOR, "[data-hits] a")))
    seen_by["search_hit"] = link.text
    link.click()
    wait(csr).until(seen.presence_of_element_located((By.ID, "activate")))
    account_page = csr.current_url
    seen_by["status_before"] = csr.find_element(By.ID, "status").text
    csr.find_element(By.ID, "activate-min").send_keys(MIN)
    csr.find_element(By.CSS_SELECTOR, "#activate button").click()
    wait(csr).until(lambda d: text_of(d, "min") == MIN)
    seen_by["status_after"] = text_of(csr, "status")
    seen_by["account_shown"] = text_of(csr, "account")

    # The adjustment request: pending until someone else approves.
    csr.find_element(By.ID, "adjust-amount").send_keys("1250")
    csr.find_element(By.ID, "adjust-reason").send_keys("dropped call refund")
    csr.find_element(By.CSS_SELECTOR, "#adjust button").click()
    seen_by["adjust_result"] = result_of(csr, "adjust")

    # The csr sees the request in the inbox, without approve buttons.
    csr.get(BASE + "/approvals")
    seen_by["csr_approve_buttons"] = len(csr.find_elements(By.CSS_SELECTOR, "button.approve"))

    # The supervisor, in a session of their own, approves it.
    sign_in(supervisor, "sue")
    supervisor.get(BASE + "/approvals")
    button = wait(supervisor).until(
        seen.element_to_be_clickable((By.CSS_SELECTOR, "#approvals button.approve")))
    button.click()
    wait(supervisor).until(lambda d: "done" in text_of(d, "approvals"))
    row = supervisor.find_element(By.CSS_SELECTOR, "#approvals tbody tr").text
    seen_by["approval_row"] = row

    # The audit page shows the approval by the supervisor.
    supervisor.get(BASE + "/audit")
    seen_by["audit"] = supervisor.find_element(By.ID, "audit").text

    # The csr's account page after the credit: the screenshot for README.
    csr.get(account_page)
    wait(csr).until(lambda d: "1250" in text_of(d, "history"))
    seen_by["history"] = text_of(csr, "history")
    seen_by["page_source"] = csr.page_source
    csr.save_screenshot(SCREENSHOT)
finally:
    csr.quit()
    supervisor.quit()

print(json.dumps(seen_by))
