"""Drives the eddy dashboard in Debian's headless chromium (selenium + Debian's chromedriver;
nothing is downloaded). Called by tests/dashboard_browser.rs:

    python dashboard_browser.py URL OUT_DIR [--shots DIR] [--serve URL] [--ps URL]

Checks, in the browser, that the DAG shows every node with a state and a duration and that the
training page's plots of metrics per published version and of backpressure per operator have
points; reads the models page's version table; clicks "promote" on the oldest version that is not
in production and waits for the table to show it in production, then for the run's own serving
page to show the run's serve node serving it. Prints one JSON line (dag states, table rows, promoted version) for the Rust side to
compare with `eddy status`/`eddy models --json` and the served version. On any failure it saves a
screenshot and the page source under OUT_DIR and exits 1. With --serve it opens an `eddy serve`
dashboard and waits for its serving page to show the promoted version; with --ps it opens an
`eddy ps serve --ui` dashboard's shard page. With --shots it saves one screenshot per page there
(docs/dashboard-*.png).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch anything

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ARGS = argparse.ArgumentParser()
ARGS.add_argument("url", help="the run's dashboard URL (with #token=)")
ARGS.add_argument("out", help="where a failure's screenshot and page go")
ARGS.add_argument("--shots", help="save a screenshot of each page here")
ARGS.add_argument("--serve", help="an `eddy serve` dashboard URL: check its serving page")
ARGS.add_argument("--ps", help="an `eddy ps serve --ui` dashboard URL: check its PS page")
OPTS = ARGS.parse_args()
URL, OUT, SHOTS = OPTS.url, OPTS.out, OPTS.shots


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("EDDY_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1360,900", "--hide-scrollbars"):
        options.add_argument(arg)
    service = Service(executable_path=os.environ.get("EDDY_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def wait(driver, what, cond, seconds=30):
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException]).until(lambda d: cond(d))
    except Exception as e:
        raise AssertionError(f"timed out waiting for {what}") from e


def page(driver, name):
    driver.execute_script(f"location.hash = '#{name}'")
    wait(driver, f"the {name} page to render", lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-rendered") == name)


def shot(driver, name):
    if SHOTS:
        time.sleep(0.3)
        driver.save_screenshot(os.path.join(SHOTS, f"dashboard-{name}.png"))


def main(driver):
    driver.get(URL)
    # the token rides in the fragment and is kept by the page
    wait(driver, "the token to be taken", lambda d: d.find_element(By.ID, "token").get_attribute("value") != "")
    page(driver, "dag")
    wait(driver, "the DAG", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#dag g.node")) > 0)
    # read at once in the page: the page redraws every second, so element handles go stale
    dag = driver.execute_script(
        "const o = {}; document.querySelectorAll('#dag g.node').forEach(g => o[g.dataset.node] = g.dataset.state); return o;")
    durations = driver.execute_script(
        "const o = {}; document.querySelectorAll('#dag g.node').forEach(g => o[g.dataset.node] = g.dataset.durationMs === '' ? null : Number(g.dataset.durationMs)); return o;")
    edges = driver.execute_script("return document.querySelectorAll('#dag path.edge').length;")
    shot(driver, "dag")

    page(driver, "training")
    wait(driver, "points in the per-version metrics plot",
         lambda d: int(d.find_element(By.ID, "plot-versions").get_attribute("data-points") or 0) > 0)
    points, polylines = driver.execute_script(
        "const s = document.getElementById('plot-versions'); return [Number(s.dataset.points), s.querySelectorAll('polyline.line').length];")
    # the run's training node shows its operators' backpressure (rates need two samples)
    wait(driver, "points in the backpressure plot",
         lambda d: int(d.find_element(By.ID, "plot-backpressure").get_attribute("data-points") or 0) > 0)
    operators = driver.execute_script(
        "return [...document.querySelectorAll('#plot-backpressure polyline.line')].map(l => l.dataset.label);")
    shot(driver, "training")

    page(driver, "models")
    wait(driver, "the version table", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#versions tbody tr")) > 0)
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#versions tbody tr')].map(tr => [tr.dataset.model, Number(tr.dataset.version), tr.dataset.stage]);")
    shot(driver, "models")
    model = rows[0][0]
    candidates = sorted(v for m, v, s in rows if m == model and s != "production")
    if not candidates:
        raise AssertionError(f"no version of {model} to promote in {rows}")
    target = candidates[0]
    for attempt in range(10):
        try:
            driver.find_element(By.CSS_SELECTOR, f'button.promote[data-model="{model}"][data-version="{target}"]').click()
            break
        except StaleElementReferenceException:
            if attempt == 9:
                raise
    wait(driver, f"{model} v{target} shown in production",
         lambda d: d.find_elements(By.CSS_SELECTOR, f'#versions tr[data-model="{model}"][data-version="{target}"][data-stage="production"]'))
    result = driver.find_element(By.ID, "action-result").text
    # the run's own serving page: its serve node swaps to the promoted version
    page(driver, "serving")
    wait(driver, f"the run's serve node serving {model} v{target}",
         lambda d: d.find_elements(By.CSS_SELECTOR, f'#served tr[data-model="{model}"][data-version="{target}"]'))
    wait(driver, "points in the run's requests plot",
         lambda d: int(d.find_element(By.ID, "plot-requests").get_attribute("data-points") or 0) > 0)
    run_served = driver.execute_script(
        "return [...document.querySelectorAll('#served tbody tr')].map(tr => [tr.dataset.server, tr.dataset.model, Number(tr.dataset.version)]);")
    shot(driver, "run-serving")
    served = None
    if OPTS.serve:
        # the model server's own dashboard: the served version follows the promotion
        driver.get(OPTS.serve)
        page(driver, "serving")
        wait(driver, f"{model} served at v{target}",
             lambda d: d.find_elements(By.CSS_SELECTOR, f'#served tr[data-model="{model}"][data-version="{target}"]'))
        wait(driver, "points in the requests plot",
             lambda d: int(d.find_element(By.ID, "plot-requests").get_attribute("data-points") or 0) > 0)
        served = target
        shot(driver, "serving")
    ps_tables = None
    if OPTS.ps:
        driver.get(OPTS.ps)
        page(driver, "ps")
        wait(driver, "the shard table", lambda d: d.find_elements(By.CSS_SELECTOR, "#shard tbody tr"))
        ps_tables = driver.execute_script("return document.querySelectorAll('#tables tbody tr').length;")
        shot(driver, "ps")
    print(json.dumps({"dag": dag, "durations": durations, "edges": edges, "plot_points": points,
                      "plot_lines": polylines, "operators": operators, "run_served": run_served,
                      "rows": rows, "model": model, "promoted": target, "result": result,
                      "served": served, "ps_tables": ps_tables}))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    driver = browser()
    try:
        main(driver)
    except Exception as e:
        driver.save_screenshot(os.path.join(OUT, "failure.png"))
        with open(os.path.join(OUT, "failure.html"), "w") as f:
            f.write(driver.page_source)
        print(f"browser check failed: {e!r}; screenshot and page in {OUT}", file=sys.stderr)
        sys.exit(1)
    finally:
        driver.quit()
