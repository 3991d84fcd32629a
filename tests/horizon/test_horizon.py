"""Horizon, in a real headless browser (Debian's chromium and chromedriver, selenium), against
the all-in-one, as the demo user: log in; open Overview, Instances, Images, Key Pairs,
Networks and Security Groups; launch an instance through the Launch Instance wizard (image,
flavor, network, security group); see it Active in the instance table with its address; open
its detail page (its address and security group shown) and its Log tab; delete it. No page
may show an error (Horizon's red `alert-danger` messages and toasts, "Error: …"), an error
page, or Horizon's login page (where Horizon sends a user it finds "not authorized").

Run (Horizon from scripts/horizon.sh, the data from tests/horizon/prepare.sh):

    .venv/bin/pytest -v tests/horizon/test_horizon.py
    .venv/bin/python tests/horizon/test_horizon.py --url http://127.0.0.1:8000/ \
        --user demo --password … --image horizon-image --flavor m1.nano --network horizon-net

Environment (the command-line options set the same):
    NOVA_HORIZON_URL          Horizon (http://127.0.0.1:8000/)
    NOVA_HORIZON_USER         demo
    NOVA_HORIZON_PASSWORD     the user's password; unset: the `demo` cloud's in
                              OS_CLIENT_CONFIG_FILE (the all-in-one's clouds.yaml)
    NOVA_HORIZON_IMAGE        horizon-image
    NOVA_HORIZON_FLAVOR       m1.nano
    NOVA_HORIZON_NETWORK      horizon-net
    NOVA_HORIZON_SECURITY_GROUP  default
    NOVA_HORIZON_SHOTS        where a failing run leaves a screenshot and the page source of
                              every step so far (/tmp/horizon-shots)
    NOVA_HORIZON_KEEP_SHOTS   1: leave the screenshots of every step also when all pass
    NOVA_HORIZON_TIMEOUT      seconds any one wait may take (30)
    NOVA_HORIZON_ACTIVE_TIMEOUT  seconds the instance may take to be Active (120)
    NOVA_HORIZON_CHROMIUM / NOVA_HORIZON_CHROMEDRIVER  (/usr/bin/chromium, /usr/bin/chromedriver)
    NOVA_HORIZON_KNOWN_ERRORS  for diagnosis only, unset in the suite: a regular expression;
                              errors shown that match it are printed instead of failing the
                              step (to see how far a run gets past a known gap)

Steps are test functions run in order on one browser; a step that needs an earlier one that
failed is skipped, saying which. Servers the test made are deleted at the end through the
API (openstacksdk, the `demo` cloud of OS_CLIENT_CONFIG_FILE) if the browser did not.
"""

import argparse
import contextlib
import os
import re
import sys
import uuid
from urllib.parse import urljoin, urlparse

import pytest
from selenium import webdriver
from selenium.common import exceptions
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.wait import WebDriverWait

# The clients' deprecation notices are not this test's business.
pytestmark = pytest.mark.filterwarnings('ignore')


def _env(name, default=None):
    value = os.environ.get(name)
    return value if value else default


def _demo_password_from_clouds_yaml():
    path = _env('OS_CLIENT_CONFIG_FILE')
    if not path or not os.path.exists(path):
        return None
    import yaml
    with open(path, encoding='utf-8') as f:
        clouds = yaml.safe_load(f).get('clouds', {})
    return clouds.get('demo', {}).get('auth', {}).get('password')


URL = _env('NOVA_HORIZON_URL', 'http://127.0.0.1:8000/')
if not URL.endswith('/'):
    URL += '/'
USER = _env('NOVA_HORIZON_USER', 'demo')
PASSWORD = _env('NOVA_HORIZON_PASSWORD') or _demo_password_from_clouds_yaml()
IMAGE = _env('NOVA_HORIZON_IMAGE', 'horizon-image')
FLAVOR = _env('NOVA_HORIZON_FLAVOR', 'm1.nano')
NETWORK = _env('NOVA_HORIZON_NETWORK', 'horizon-net')
SECURITY_GROUP = _env('NOVA_HORIZON_SECURITY_GROUP', 'default')
SHOTS = _env('NOVA_HORIZON_SHOTS', '/tmp/horizon-shots')
KEEP_SHOTS = _env('NOVA_HORIZON_KEEP_SHOTS') == '1'
TIMEOUT = float(_env('NOVA_HORIZON_TIMEOUT', '30'))
ACTIVE_TIMEOUT = float(_env('NOVA_HORIZON_ACTIVE_TIMEOUT', '120'))
CHROMIUM = _env('NOVA_HORIZON_CHROMIUM', '/usr/bin/chromium')
CHROMEDRIVER = _env('NOVA_HORIZON_CHROMEDRIVER', '/usr/bin/chromedriver')
KNOWN_ERRORS = re.compile(_env('NOVA_HORIZON_KNOWN_ERRORS')) \
    if _env('NOVA_HORIZON_KNOWN_ERRORS') else None

INSTANCE = 'horizon-test-' + uuid.uuid4().hex[:8]
IPV4 = re.compile(r'\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b')

# Runs in every document before its own scripts: records each error Horizon shows (the
# `alert-danger` of Django's messages, of the Angular toasts and of horizon.alert) in the tab's
# sessionStorage, where it outlives the page: the Launch Instance wizard, for one, shows its
# "Unable to create the server." toast and then loads the instance page at once.
OBSERVER = r"""
(function () {
  var KEY = 'nova-horizon-test-errors';
  function record(text) {
    text = (text || '').replace(/\s+/g, ' ').trim();
    if (!text) { return; }
    try {
      var list = JSON.parse(sessionStorage.getItem(KEY) || '[]');
      list.push(text);
      sessionStorage.setItem(KEY, JSON.stringify(list));
    } catch (e) { /* storage unavailable */ }
  }
  var seen = new WeakSet();
  function scan(root) {
    if (!root.querySelectorAll) { return; }
    var found = Array.prototype.slice.call(root.querySelectorAll('.alert-danger'));
    if (root.matches && root.matches('.alert-danger')) { found.push(root); }
    found.forEach(function (el) {
      if (seen.has(el)) { return; }
      seen.add(el);
      var text = el.innerText || el.textContent || '';
      if (text.trim() && text.indexOf('{$') < 0) {
        record(text);
      } else {
        // An Angular toast whose text is not interpolated yet.
        setTimeout(function () { record(el.innerText || el.textContent); }, 0);
      }
    });
  }
  function start() {
    scan(document);
    new MutationObserver(function (records) {
      records.forEach(function (r) {
        r.addedNodes.forEach(function (n) { scan(n); });
        if (r.type === 'attributes') { scan(r.target); }
      });
    }).observe(document.documentElement, {childList: true, subtree: true,
                                          attributes: true, attributeFilter: ['class']});
  }
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
"""
PEEK_ERRORS = "return sessionStorage.getItem('nova-horizon-test-errors')"
TAKE_ERRORS = r"""
var KEY = 'nova-horizon-test-errors';
var list = JSON.parse(sessionStorage.getItem(KEY) || '[]');
sessionStorage.removeItem(KEY);
return list;
"""

# Waits until neither jQuery nor Angular has a request outstanding (Horizon's pages load
# their data with both) and Angular has digested the answers.
SETTLED = r"""
var done = arguments[arguments.length - 1];
function jq() { return typeof jQuery === 'undefined' || jQuery.active === 0; }
function poll() {
  if (document.readyState !== 'complete' || !jq()) { return setTimeout(poll, 50); }
  var root = document.querySelector('[ng-app]') || document.body;
  if (window.angular && angular.getTestability) {
    try {
      return angular.getTestability(root).whenStable(function () {
        setTimeout(function () { done(jq()); }, 0);
      });
    } catch (e) { /* no Angular application on this page */ }
  }
  done(true);
}
poll();
"""


class Steps:
    """What the steps share, and what a failing run leaves behind."""

    def __init__(self, driver):
        self.driver = driver
        self.done = set()
        self.shots = []  # (name, png, html) of every step so far
        self.instance_id = None
        self.instance_ip = None
        self.failed = False

    def need(self, *steps):
        missing = [s for s in steps if s not in self.done]
        if missing:
            pytest.skip('needs the step(s) that failed: ' + ', '.join(missing))

    def snapshot(self, name):
        with contextlib.suppress(Exception):
            self.shots.append((name, self.driver.get_screenshot_as_png(),
                               self.driver.page_source))

    def save_shots(self):
        os.makedirs(SHOTS, exist_ok=True)
        for i, (name, png, html) in enumerate(self.shots, 1):
            base = os.path.join(SHOTS, f'{i:02d}-{name}')
            with open(base + '.png', 'wb') as f:
                f.write(png)
            with open(base + '.html', 'w', encoding='utf-8') as f:
                f.write(html)

    @contextlib.contextmanager
    def step(self, name):
        try:
            yield
        except BaseException as e:
            if isinstance(e, pytest.skip.Exception):
                raise
            self.failed = True
            self.snapshot(name + '-FAILED')
            self.save_shots()
            raise
        self.snapshot(name)
        self.done.add(name)

    # ---- waits and checks ---------------------------------------------------------------

    def wait(self, condition, timeout=None, message=''):
        return WebDriverWait(self.driver, timeout or TIMEOUT, poll_frequency=0.1).until(
            condition, message)

    def settle(self):
        self.driver.set_script_timeout(TIMEOUT)
        self.driver.execute_async_script(SETTLED)

    def page_errors(self):
        """What is wrong with the page shown now: error messages and toasts, error pages,
        the login page."""
        d = self.driver
        problems = []
        path = urlparse(d.current_url).path
        if path.startswith('/auth/login') or path.startswith('/auth/error'):
            problems.append(f'Horizon sent the browser to its login page ({d.current_url}): '
                            'it found the user not authorized or logged out')
        # Horizon's error pages: "Page Not Found - OpenStack Dashboard", "403 Forbidden", …
        title = (d.title or '').split(' - ')[0]
        if re.search(r'not found|forbidden|server error|\berror\b|went wrong|unauthorized',
                     title, re.I):
            problems.append(f'an error page: title {d.title!r}')
        recorded = d.execute_script(TAKE_ERRORS) or []
        shown = [e.text.strip() for e in d.find_elements(By.CSS_SELECTOR, '.alert-danger')
                 if e.text.strip()]
        for text in dict.fromkeys(' '.join(t.split()) for t in recorded + shown):
            if not text:
                continue
            if KNOWN_ERRORS is not None and KNOWN_ERRORS.search(text):
                print(f'known error (NOVA_HORIZON_KNOWN_ERRORS), not failing: {text}')
                continue
            problems.append('error shown: ' + text)
        return problems

    def check_page(self, what):
        self.settle()
        problems = self.page_errors()
        api = self.failed_requests()  # read at every check: the failures of this page only
        if problems:
            raise AssertionError(f'{what}: ' + '; '.join(problems)
                                 + (('\nfailed requests in the browser: ' + '; '.join(api))
                                    if api else ''))

    def failed_requests(self):
        """The browser's own record of the requests that failed (>= 400), mostly Horizon's
        REST API under /api/; the Horizon log has what Horizon asked the APIs and their
        answers."""
        out = []
        with contextlib.suppress(Exception):
            for entry in self.driver.get_log('browser'):
                msg = entry.get('message', '')
                if 'Failed to load resource' in msg:
                    out.append(msg.split(' - ')[0] + ' ' + msg.rsplit('status of', 1)[-1])
        return list(dict.fromkeys(out))

    def open(self, path, ready):
        """Opens a page of Horizon and waits for the element `ready` (a CSS selector)."""
        self.driver.get(urljoin(URL, path))
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ready)
                  or urlparse(d.current_url).path.startswith('/auth/'),
                  message=f'{path}: no {ready}')
        self.check_page(path)

    def instance_row(self):
        rows = self.driver.find_elements(
            By.CSS_SELECTOR, f"table#instances tr[data-display='{INSTANCE}']")
        return rows[0] if rows else None


@pytest.fixture(scope='module')
def hz():
    if not PASSWORD:
        pytest.fail('no password: set NOVA_HORIZON_PASSWORD or OS_CLIENT_CONFIG_FILE')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                '--window-size=1400,1000', '--no-first-run', '--disable-extensions',
                '--disable-background-networking', '--disable-sync',
                '--disable-component-update', '--disable-default-apps',
                '--proxy-server=direct://', '--proxy-bypass-list=*'):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd('Page.addScriptToEvaluateOnNewDocument', {'source': OBSERVER})
    driver.set_page_load_timeout(TIMEOUT)
    steps = Steps(driver)
    yield steps
    if KEEP_SHOTS and not steps.failed:
        steps.save_shots()
    driver.quit()
    _delete_leftovers()


def _delete_leftovers():
    """Deletes, through the API, a server of this run the browser did not delete."""
    if not _env('OS_CLIENT_CONFIG_FILE'):
        return
    with contextlib.suppress(Exception):
        import openstack
        conn = openstack.connect(cloud='demo')
        for server in conn.compute.servers(name=f'^{INSTANCE}$'):
            conn.compute.delete_server(server)


# ---- the steps -------------------------------------------------------------------------------

def test_login(hz):
    d = hz.driver
    with hz.step('login'):
        d.get(urljoin(URL, 'auth/login/'))
        hz.wait(EC.element_to_be_clickable((By.ID, 'id_username')))
        d.find_element(By.ID, 'id_username').send_keys(USER)
        d.find_element(By.ID, 'id_password').send_keys(PASSWORD)
        d.find_element(By.CSS_SELECTOR, 'button[type=submit], #loginBtn').click()
        hz.wait(lambda d: not urlparse(d.current_url).path.startswith('/auth/login')
                or d.find_elements(By.CSS_SELECTOR, '.alert-danger, .error'),
                message='the login page did not go')
        assert not urlparse(d.current_url).path.startswith('/auth/'), \
            'login refused: ' + ' '.join(e.text for e in d.find_elements(
                By.CSS_SELECTOR, '.alert-danger, .error, .help-block'))
        hz.wait(EC.presence_of_element_located((By.CSS_SELECTOR, '#main_content, .page-header')))
        hz.check_page('after login')


PAGES = [
    ('overview', 'project/', '#main_content .quota-dynamic, #main_content .usage'),
    ('instances', 'project/instances/', 'table#instances'),
    ('images', 'project/images', 'hz-resource-table, table'),
    ('key_pairs', 'project/key_pairs/', 'table#keypairs'),
    ('networks', 'project/networks/', 'table#networks'),
    ('security_groups', 'project/security_groups/', 'table#security_groups'),
]


@pytest.mark.parametrize('name,path,ready', PAGES, ids=[p[0] for p in PAGES])
def test_page(hz, name, path, ready):
    hz.need('login')
    with hz.step('page-' + name):
        hz.open(path, ready)
        if name == 'images':
            # The Angular panel fills its table after Glance answered.
            hz.wait(lambda d: any(IMAGE == e.text.strip() for e in d.find_elements(
                By.CSS_SELECTOR, 'hz-resource-table a, table a')),
                message=f'image {IMAGE} not listed')
            hz.check_page(path)
        if name == 'networks':
            assert NETWORK in d_text(hz, 'table#networks'), f'network {NETWORK} not listed'


def d_text(hz, css):
    return ' '.join(e.text for e in hz.driver.find_elements(By.CSS_SELECTOR, css))


def _wizard_step(hz, wizard, title, form):
    wizard.find_element(By.CSS_SELECTOR, 'div.wizard-nav').find_element(
        By.LINK_TEXT, title).click()
    section = hz.wait(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, f'ng-include[ng-form={form}]')), message=f'wizard step {title}')
    hz.settle()
    return section


def _allocate(hz, section, label):
    """Moves the row named `label` of a transfer table to its allocated part (or leaves it
    there)."""
    def row_button(arrow):
        return section.find_elements(
            By.XPATH, f".//tr[.//*[normalize-space(text())='{label}']]"
            f"//*[contains(@class, 'fa-arrow-{arrow}')]")
    hz.wait(lambda d: row_button('up') or row_button('down'),
            message=f'{label} is not offered')
    if not row_button('down'):
        row_button('up')[0].click()
        hz.wait(lambda d: row_button('down'), message=f'{label} was not allocated')


def test_launch_instance(hz):
    hz.need('login')
    with hz.step('launch'):
        hz.open('project/instances/', 'table#instances')
        hz.wait(EC.element_to_be_clickable((By.LINK_TEXT, 'Launch Instance'))).click()
        wizard = hz.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, 'wizard')))
        name = hz.wait(EC.element_to_be_clickable((By.ID, 'name')))
        hz.settle()
        name.send_keys(INSTANCE)
        _allocate(hz, _wizard_step(hz, wizard, 'Source', 'launchInstanceSourceForm'), IMAGE)
        _allocate(hz, _wizard_step(hz, wizard, 'Flavor', 'launchInstanceFlavorForm'), FLAVOR)
        _allocate(hz, _wizard_step(hz, wizard, 'Networks', 'launchInstanceNetworkForm'),
                  NETWORK)
        _allocate(hz, _wizard_step(hz, wizard, 'Security Groups',
                                   'launchInstanceAccessAndSecurityForm'), SECURITY_GROUP)
        hz.check_page('the Launch Instance wizard')
        hz.wait(EC.element_to_be_clickable((By.CSS_SELECTOR, 'button.btn-primary.finish')),
                message='Launch Instance stays disabled').click()
        hz.wait(EC.invisibility_of_element_located((By.CSS_SELECTOR, 'wizard')),
                message='the wizard did not close')
        hz.check_page('after Launch Instance')
        hz.wait(lambda d: hz.instance_row() is not None or d.execute_script(PEEK_ERRORS),
                message=f'{INSTANCE} not in the instance table')
        hz.check_page('the instance table after the launch')
        hz.instance_id = hz.instance_row().get_attribute('data-object-id')


def _cells(hz, row, *headers):
    """The texts of a row's cells under the instance table's columns `headers`."""
    names = [th.text.strip() for th in hz.driver.find_elements(
        By.CSS_SELECTOR, 'table#instances thead tr:last-child th')]
    tds = row.find_elements(By.XPATH, './td')
    return [tds[names.index(h)].text.strip() if h in names and names.index(h) < len(tds)
            else '' for h in headers]


def test_instance_active_with_ip(hz):
    hz.need('launch')
    with hz.step('active'):
        last = ['']

        def active(d):
            row = hz.instance_row()
            if row is None:
                return False
            try:
                status, ips = _cells(hz, row, 'Status', 'IP Address')
            except exceptions.StaleElementReferenceException:
                return False  # Horizon replaced the row with its update
            last[0] = row.text
            if status == 'Error':
                raise AssertionError(f'{INSTANCE} went to Error: {row.text}')
            return status == 'Active' and IPV4.search(ips)
        try:
            hz.instance_ip = hz.wait(active, timeout=ACTIVE_TIMEOUT).group(0)
        except exceptions.TimeoutException:
            raise AssertionError(f'{INSTANCE} not Active with an address within '
                                 f'{ACTIVE_TIMEOUT:.0f} s: {last[0]!r}') from None
        hz.check_page('the instance table')


def test_instance_detail(hz):
    hz.need('active')
    d = hz.driver
    with hz.step('detail'):
        if hz.instance_row() is None:  # (the Active step ends on the instance table)
            hz.open('project/instances/', 'table#instances')
            hz.wait(lambda d: hz.instance_row(), message=f'{INSTANCE} not listed')
        hz.instance_row().find_element(By.LINK_TEXT, INSTANCE).click()
        hz.wait(EC.presence_of_element_located((By.CSS_SELECTOR, 'ul.nav-tabs')),
                message='no detail page')
        hz.check_page('the instance detail page')
        overview = d_text(hz, '.tab-content')
        assert INSTANCE in overview and hz.instance_ip in overview, overview[:500]
        # The overview's "Security Groups" section names the instance's groups (from its
        # ports), each with its rules.
        groups = [e.text.strip() for e in d.find_elements(
            By.XPATH, "//h4[normalize-space()='Security Groups']"
                      "/following-sibling::dl[1]/dt")]
        assert SECURITY_GROUP in groups, \
            f'security group {SECURITY_GROUP} not on the detail page (it shows {groups})'


def test_instance_log(hz):
    hz.need('active')
    d = hz.driver
    with hz.step('log'):
        hz.open(f'project/instances/{hz.instance_id}/', 'ul.nav-tabs')
        d.find_element(By.XPATH, "//ul[contains(@class, 'nav-tabs')]//a[normalize-space()"
                                 "='Log']").click()
        hz.wait(EC.visibility_of_element_located(
            (By.CSS_SELECTOR, '.tab-pane.active pre.logs')),
            message='the Log tab shows no log')
        hz.check_page('the Log tab')


def test_delete_instance(hz):
    hz.need('launch')
    with hz.step('delete'):
        hz.open('project/instances/', 'table#instances')
        row = hz.wait(lambda d: hz.instance_row(), message=f'{INSTANCE} not listed')
        row.find_element(By.CSS_SELECTOR, 'td.actions_column .dropdown-toggle').click()
        row.find_element(By.XPATH, ".//ul[contains(@class, 'dropdown-menu')]"
                                   "//*[normalize-space()='Delete Instance']").click()
        hz.wait(EC.element_to_be_clickable(
            (By.CSS_SELECTOR, '.modal-dialog .btn-danger'))).click()
        message = hz.wait(lambda d: ' '.join(e.text for e in d.find_elements(
            By.CSS_SELECTOR, '.messages .alert')), message='no message after the delete')
        hz.check_page('after the delete')
        assert f'Scheduled deletion of Instance: {INSTANCE}' in message, message
        hz.wait(lambda d: hz.instance_row() is None, timeout=ACTIVE_TIMEOUT,
                message=f'{INSTANCE} still listed')
        hz.check_page('the instance table after the delete')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    for opt, var in (('--url', 'NOVA_HORIZON_URL'), ('--user', 'NOVA_HORIZON_USER'),
                     ('--password', 'NOVA_HORIZON_PASSWORD'),
                     ('--image', 'NOVA_HORIZON_IMAGE'), ('--flavor', 'NOVA_HORIZON_FLAVOR'),
                     ('--network', 'NOVA_HORIZON_NETWORK'),
                     ('--security-group', 'NOVA_HORIZON_SECURITY_GROUP'),
                     ('--shots', 'NOVA_HORIZON_SHOTS')):
        p.add_argument(opt, help=f'(${var})')
    args, rest = p.parse_known_args()
    for opt, value in vars(args).items():
        if value is not None:
            os.environ['NOVA_HORIZON_' + opt.upper()] = value
    return pytest.main(['-v', '-p', 'no:cacheprovider', __file__] + rest)


if __name__ == '__main__':
    sys.exit(main())
