"""The monitoring option on a real engine: Prometheus finds the bots through Docker's DNS.

One ecosystem with ``with_monitoring`` (the text and the media bot of test_ecosystem.py, so
their image layers are reused; Prometheus and Alertmanager are stand-ins from Debian's
packages). What differs from what an operator starts is in ``compose.monitoring.e2e.yaml``:

- Prometheus publishes on a free loopback port instead of 127.0.0.1:9090 (another ecosystem
  may hold that port on this machine);
- its configuration and Alertmanager's are the shipped files with shorter timings only
  (``monitoring-e2e/``: 1 s scrapes and evaluations, DNS refreshed every 2 s, BotDown and
  BotMissing after 2 s instead of 2 minutes, alerts grouped for 1 s): the same
  ``dns_sd_configs`` names, rules, receiver and entrypoint; bots.yml expects one more bot,
  ``ghost-bot``, which has no service;
- both servers get 127.0.0.1 as their upstream DNS server: Docker's embedded DNS answers the
  service names, and anything it would forward goes to the containers' own loopback, never to
  a resolver outside the compose network.

Alertmanager's Telegram receiver posts through ALERTS_API_URL to the fake Bot API (the Local
Bot API server of these tests), under a token of its own.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine.ecosystem import BotSpec, Ecosystem, wait_for
from tests.engine.standins import (
    ALERTMANAGER,
    PROMETHEUS,
    StandIns,
    build_monitoring_standins,
    build_standins,
    docker,
)
from tests.engine.test_ecosystem import MEDIA, TEXT, docker_engine_available, start_and_wait

pytestmark = [pytest.mark.engine, pytest.mark.xdist_group("engine")]

BOTS = (TEXT, MEDIA)
ALERTS = BotSpec("alerts", {})  # only its token: the bot Alertmanager posts as
CHANNEL = -1001234567890
OVERRIDE = "compose.monitoring.e2e.yaml"
FAST = "monitoring-e2e"
USERS = iter(range(9_000_001, 9_100_000))
GHOST = "ghost-bot"


@pytest.fixture(scope="module")
def eco(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecosystem]:
    problem = docker_engine_available()
    if problem:
        pytest.fail(f"{problem}. Deselect engine tests with -m 'not engine'.", pytrace=False)
    root = tmp_path_factory.mktemp("engine-monitoring") / "ecosystem"
    env = {
        "ALERTS_BOT_TOKEN": ALERTS.token,
        "ALERTS_CHAT_ID": str(CHANNEL),
        "ALERTS_API_URL": "http://telegram-bot-api:8081",
        "METRICS_PORT": "9100",  # as .env.example sets it with monitoring on
        "PROMETHEUS_IMAGE": PROMETHEUS,
        "ALERTMANAGER_IMAGE": ALERTMANAGER,
    }
    ecosystem = Ecosystem(root, BOTS, StandIns(), project=f"e2em{secrets.token_hex(3)}",
                          answers={"with_monitoring": True}, env=env,
                          overrides=[OVERRIDE])  # fmt: skip
    ecosystem.render()
    write_fast_monitoring(root)
    (root / OVERRIDE).write_text(OVERRIDE_TEXT)
    build_standins(root / TEXT.slug / "ecosystem_shared", ecosystem.standins)
    build_monitoring_standins()
    with ecosystem.running():
        yield ecosystem


OVERRIDE_TEXT = f"""\
# The engine tests' changes to the monitoring services (see tests/engine/test_monitoring.py).
services:
  prometheus:
    ports: !override
      - "127.0.0.1::9090"
    volumes:
      - ./{FAST}/prometheus:/etc/prometheus:ro
    dns: [127.0.0.1]
    healthcheck: {{interval: 2s, start_period: 60s}}
  alertmanager:
    volumes:
      - ./{FAST}/alertmanager:/etc/alertmanager:ro
    dns: [127.0.0.1]
    healthcheck: {{interval: 2s, start_period: 60s}}
"""


def write_fast_monitoring(root: Path) -> None:
    """``monitoring/`` with the shorter timings of these tests, as ``monitoring-e2e/``."""
    shipped, fast = root / "monitoring", root / FAST
    shutil.copytree(shipped, fast)
    prometheus = yaml.safe_load((shipped / "prometheus" / "prometheus.yml").read_text())
    prometheus["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (job,) = prometheus["scrape_configs"]
    assert [c["names"] for c in job["dns_sd_configs"]] == [[b.slug] for b in BOTS]
    for sd in job["dns_sd_configs"]:
        sd["refresh_interval"] = "2s"
    (fast / "prometheus" / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
    rules = yaml.safe_load((shipped / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] in {"BotDown", "BotMissing"}:
                rule["for"] = "2s"
    (fast / "prometheus" / "alerts.yml").write_text(yaml.safe_dump(rules))
    expected = yaml.safe_load((shipped / "prometheus" / "bots.yml").read_text())
    (group,) = expected["groups"]
    assert [rule["labels"]["bot"] for rule in group["rules"]] == [b.slug for b in BOTS]
    group["rules"].append({**group["rules"][0], "labels": {"bot": GHOST}})
    (fast / "prometheus" / "bots.yml").write_text(yaml.safe_dump(expected))
    template = fast / "alertmanager" / "alertmanager.yml.template"
    text = template.read_text()
    for slow, quick in (("group_wait: 30s", "group_wait: 1s"),
                        ("group_interval: 5m", "group_interval: 1s")):  # fmt: skip
        assert text.count(slow) == 1, slow
        text = text.replace(slow, quick)
    template.write_text(text)
    for directory in (fast / "prometheus", fast / "alertmanager"):  # read by user nobody
        directory.chmod(0o755)
        for path in directory.iterdir():
            path.chmod(0o644)


# ---------------------------------------------------------------------- Prometheus' HTTP API
def prometheus_api(eco: Ecosystem, path: str, **params: str) -> Any:
    port = eco.compose("port", "prometheus", "9090").strip().rsplit(":", 1)[1]
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    url = f"http://127.0.0.1:{port}/api/v1/{path}{query}"
    with urllib.request.urlopen(url, timeout=10) as response:  # nosec B310: loopback
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def query(eco: Ecosystem, expr: str) -> dict[str, float]:
    """An instant query's samples by their ``bot`` label."""
    result = prometheus_api(eco, "query", query=expr)["result"]
    return {item["metric"].get("bot", ""): float(item["value"][1]) for item in result}


def bot_targets(eco: Ecosystem) -> list[dict[str, Any]]:
    targets = prometheus_api(eco, "targets", state="active")["activeTargets"]
    return [t for t in targets if t["labels"].get("job") == "bots"]


def network_addresses(eco: Ecosystem, service: str) -> set[str]:
    """The addresses of ``service``'s containers on the ecosystem's network."""
    found = set()
    for container in eco.services():
        if container["Service"] != service:
            continue
        shown = "{{json .NetworkSettings.Networks}}"
        networks = json.loads(docker("inspect", "--format", shown, container["ID"]))
        found |= {n["IPAddress"] for name, n in networks.items()
                  if name.endswith("telegram-network")}  # fmt: skip
    return found


def channel_posts(eco: Ecosystem) -> list[str]:
    """What Alertmanager posted to the channel, oldest first."""
    return [str(c["params"]["text"]) for c in eco.calls(ALERTS, "sendMessage")
            if int(c["params"]["chat_id"]) == CHANNEL]  # fmt: skip


# ---------------------------------------------------------------------- tests
def test_prometheus_finds_every_bot_through_docker_dns_and_scrapes_it(eco: Ecosystem) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        targets = bot_targets(eco)
        healthy = {t["labels"]["bot"] for t in targets if t["health"] == "up"}
        return targets if healthy == {b.slug for b in BOTS} else None

    targets = wait_for("both bots scraped", all_up, 120)
    assert len(targets) == len(BOTS), targets
    for target in targets:
        slug = target["labels"]["bot"]
        # Found by the dns_sd_configs entry of its service name, at the address Docker's DNS
        # gave: the container's own on the compose network.
        assert target["discoveredLabels"]["__meta_dns_name"] == slug
        host = urllib.parse.urlsplit(target["scrapeUrl"]).hostname
        assert {host} == network_addresses(eco, slug), (target, slug)
        assert target["scrapeUrl"].endswith(":9100/metrics")
    assert query(eco, 'up{job="bots"}') == {b.slug: 1.0 for b in BOTS}
    # The bots' own series, labelled by the bots themselves (honor_labels): what the fake Bot
    # API saw equals what Prometheus scraped.
    users = [next(USERS) for _ in range(3)]
    start_and_wait(eco, TEXT, users)
    sent = len(eco.calls(TEXT, "sendMessage"))
    expr = 'sum by (bot) (tgbot_api_requests_total{method="sendMessage", outcome="ok"})'
    wait_for("echo-bot's sendMessage count in Prometheus",
             lambda: query(eco, expr).get(TEXT.slug) == sent, 60)  # fmt: skip
    started = query(eco, "sum by (bot) (tgbot_start_timestamp_seconds)")
    assert set(started) == {b.slug for b in BOTS}, started


def test_a_stuck_bot_is_reported_in_the_channel_and_resolved(eco: Ecosystem) -> None:
    """A frozen bot (``docker compose pause``): its container and its DNS name stay, its
    metrics stop answering, so ``up == 0``: BotDown fires, Alertmanager posts it through the
    fake Bot API, and the resolved message follows once the bot answers again."""
    before = len(channel_posts(eco))
    eco.compose("pause", TEXT.slug)
    try:

        def firing() -> str | None:
            new = channel_posts(eco)[before:]
            return next((text for text in new if re.search(r"Firing.*BotDown", text)), None)

        text = wait_for("BotDown posted to the channel", firing, 120)
        assert f"{TEXT.slug} is down" in text, text
        assert MEDIA.slug not in text, text
    finally:
        eco.compose("unpause", TEXT.slug)

    def resolved() -> str | None:
        new = channel_posts(eco)[before:]
        return next((text for text in new if re.search(r"Resolved.*BotDown", text)), None)

    text = wait_for("BotDown resolved in the channel", resolved, 120)
    assert TEXT.slug in text, text
    assert query(eco, 'up{job="bots"}') == {b.slug: 1.0 for b in BOTS}


def test_an_expected_bot_without_a_container_is_reported_missing(eco: Ecosystem) -> None:
    """bots.yml names a bot no container answers for (as a stopped one, gone from Docker's
    DNS): BotMissing reaches the channel for it, and for no bot that runs."""

    def missing() -> list[str] | None:
        posts = [text for text in channel_posts(eco) if re.search(r"Firing.*BotMissing", text)]
        return posts or None

    posts = wait_for("BotMissing posted to the channel", missing, 120)
    assert all(f"{GHOST} is missing" in text for text in posts), posts
    assert not any(b.slug in text for b in BOTS for text in posts), posts
    assert query(eco, 'ALERTS{alertname="BotMissing", alertstate="firing"}') == {GHOST: 1.0}
