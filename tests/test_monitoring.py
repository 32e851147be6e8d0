"""The ecosystem's monitoring option (``with_monitoring``): Prometheus, Alertmanager, Grafana.

The deployment files are checked by the tools that read them (``docker compose config``,
``promtool check config``/``check rules``/``test rules``, ``amtool check-config``), then run for
real on loopback: Debian's Prometheus scrapes real bot processes (a polling bot and a webhook
bot; three bots under ``ecosystem_host``) talking to fake Bot API servers, the counters it stores
equal what the fakes saw, every dashboard query returns data, and a killed bot's BotDown alert
goes through Debian's Alertmanager to the channel on the fake Bot API, then resolves.

The test copies of the configurations differ from the shipped ones in their intervals only
(seconds instead of minutes) and in the targets (loopback ports instead of Docker DNS names).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.render import copy_template
from devkit.testkit import shared_module
from tests.deployment import (
    ECOSYSTEM_ENV,
    check_jsonschema,
    compose_config,
    fill_env_example,
    load_yaml,
    resolved,
)
from tests.helpers import assert_ok, run
from tests.monitoring import (
    AlertmanagerServer,
    PrometheusServer,
    amtool,
    promtool,
    servers,
)
from tests.test_backups import server_url  # noqa: F401 - a fixture
from tests.test_host import HostProcess, database_url  # noqa: F401 - a fixture

fake_bot_api = shared_module("testing.fake_bot_api")
bot_process = shared_module("testing.bot_process")

MONITORING = pytest.mark.xdist_group("monitoring")
BOTS = ("text-bot", "shop-bot", "crm-bot")
CHANNEL = -1001234567890
ALERTS_ENV = {"ALERTS_BOT_TOKEN": "7100:alerts-token", "ALERTS_CHAT_ID": str(CHANNEL)}
TIMEOUT = 60.0
OK_SENT = 'method="sendMessage", outcome="ok"'


@pytest.fixture(scope="module")
def ecosystems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Ecosystems with monitoring: separate services (with the Local Bot API) and host mode,
    each with real bots rendered into it."""
    root = tmp_path_factory.mktemp("monitoring")
    found = {}
    for deployment, local in (("separate", True), ("host", False)):
        eco = copy_template(
            root / deployment,
            {
                "project_type": "ecosystem",
                "bots": ",".join(BOTS),
                "with_monitoring": True,
                "with_local_bot_api": local,
                "deployment": deployment,
            },
        )
        for slug in BOTS:
            answers = {"bot_slug": slug, "language": "en", "crm": slug == "crm-bot"}
            copy_template(eco / slug, answers)
            example = eco / slug / ".env.example"
            (eco / slug / ".env").write_text(
                fill_env_example(example, {"BOT_TOKEN": "123:abc"}), "utf-8"
            )
        env = ECOSYSTEM_ENV | ALERTS_ENV
        (eco / ".env").write_text(fill_env_example(eco / ".env.example", env), "utf-8")
        found[deployment] = eco
    return found


def monitoring(eco: Path) -> Path:
    return eco / "monitoring"


# ---------------------------------------------------------------- deployment files


@MONITORING
def test_compose_runs_prometheus_alertmanager_and_an_optional_grafana(
    ecosystems: dict[str, Path],
) -> None:
    check_jsonschema("vendor.compose-spec", [eco / "compose.yaml" for eco in ecosystems.values()])
    model = resolved(ecosystems["separate"])
    services = model["services"]
    assert {"prometheus", "alertmanager", *BOTS} <= set(services)
    assert "grafana" not in services, "Grafana runs with --profile dashboard only"
    for name in ("prometheus", "alertmanager"):
        service = services[name]
        assert service["read_only"] is True and list(service["networks"]) == ["telegram-network"]
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} must not face the internet"
    alertmanager = services["alertmanager"]
    assert alertmanager["environment"] == {
        **ALERTS_ENV,
        "ALERTS_API_URL": "http://telegram-bot-api:8081",  # the Local Bot API server answer
    }
    assert alertmanager["entrypoint"] == ["/bin/sh", "/etc/alertmanager/entrypoint.sh"]
    for slug in BOTS:  # every bot serves /metrics on the port the scrape configuration names
        environment = services[slug]["environment"]
        assert environment["METRICS_PORT"] == "9100"
        assert environment["METRICS_HOST"] == "0.0.0.0"
        assert environment["BOT_SLUG"] == slug
        assert "ports" not in services[slug]
    scrape = load_yaml(monitoring(ecosystems["separate"]) / "prometheus" / "prometheus.yml")
    (job,) = scrape["scrape_configs"]
    assert [c["names"] for c in job["dns_sd_configs"]] == [[slug] for slug in BOTS]
    assert {c["port"] for c in job["dns_sd_configs"]} == {9100}

    with_grafana = compose_config_profile(ecosystems["separate"], "dashboard")
    grafana = with_grafana["services"]["grafana"]
    mounts = {m["target"] for m in grafana["volumes"]}
    assert {"/etc/grafana/provisioning", "/var/lib/grafana-dashboards"} <= mounts

    host = resolved(ecosystems["host"])["services"]
    assert host["bots"]["environment"]["HOST_METRICS_PORT"] == "9101"
    assert host["alertmanager"]["environment"]["ALERTS_API_URL"] == "https://api.telegram.org"
    scrape = load_yaml(monitoring(ecosystems["host"]) / "prometheus" / "prometheus.yml")
    (job,) = scrape["scrape_configs"]
    assert [(c["targets"], c["labels"]) for c in job["static_configs"]] == [
        ([f"bots:{9101 + n}"], {"bot": slug}) for n, slug in enumerate(BOTS)
    ]


def compose_config_profile(eco: Path, profile: str) -> dict[str, Any]:
    env = {**os.environ, "COMPOSE_PROFILES": profile}
    cmd = [*compose_config_command(eco)]
    result = subprocess.run(cmd, cwd=eco, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout[result.stdout.index("{") :])
    assert isinstance(loaded, dict)
    return loaded


def compose_config_command(eco: Path) -> list[str]:
    from tests.deployment import compose_command

    return [*compose_command(), "--project-directory", str(eco), "config", "--format", "json"]


@MONITORING
def test_a_missing_alerts_variable_is_named(ecosystems: dict[str, Path], tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(fill_env_example(ecosystems["separate"] / ".env.example", ECOSYSTEM_ENV))
    result = compose_config(ecosystems["separate"], env)
    assert result.returncode != 0
    # Both are unset; compose names whichever it meets first (its order varies between runs).
    assert re.search(r"set ALERTS_(BOT_TOKEN|CHAT_ID) in \.env", result.stdout), result.stdout


@MONITORING
def test_promtool_accepts_the_configuration_and_every_alert_has_unit_tests(
    ecosystems: dict[str, Path],
) -> None:
    for eco in ecosystems.values():
        prometheus = monitoring(eco) / "prometheus"
        checked = run([promtool(), "check", "config", "prometheus.yml"], prometheus, timeout=60)
        assert_ok(checked, "promtool check config")
        assert "SUCCESS: 8 rules found" in checked.stdout  # alerts.yml
        # bots.yml: one expected-bot series per bot of the ecosystem, for BotMissing.
        (group,) = load_yaml(prometheus / "bots.yml")["groups"]
        assert [rule["labels"]["bot"] for rule in group["rules"]] == list(BOTS)
        assert {rule["record"] for rule in group["rules"]} == {"tgbot:expected_bot"}
        assert f"SUCCESS: {len(BOTS)} rules found" in checked.stdout
        tested = run([promtool(), "test", "rules", "alerts.test.yml"], prometheus, timeout=60)
        assert_ok(tested, "promtool test rules")
    rules = load_yaml(monitoring(ecosystems["host"]) / "prometheus" / "alerts.yml")
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert names == {
        "BotDown",
        "BotMissing",
        "BotNotPolling",
        "HandlerErrorRatioHigh",
        "BotApiRetryAfterWaits",
        "DigestMissing",
        "AnalyticsDroppingEvents",
        "DatabaseUnavailable",
    }
    tests = load_yaml(monitoring(ecosystems["host"]) / "prometheus" / "alerts.test.yml")
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if not case["exp_alerts"] or len(test["input_series"]) > len(case["exp_alerts"])
    }
    assert fired == names and quiet == names, "each alert: a firing and a not-firing case"


def alertmanager_config(eco: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The entrypoint of the alertmanager service, writing ``out`` and running ``true``."""
    entrypoint = monitoring(eco) / "alertmanager" / "entrypoint.sh"
    environment = {
        "PATH": os.environ["PATH"],
        "ALERTMANAGER_CONFIG": str(out),
        "ALERTMANAGER_BIN": "true",
        **env,
    }
    return run(["dash", str(entrypoint)], out.parent, timeout=30, env=environment)


@MONITORING
def test_alertmanager_configuration_is_written_from_the_environment(
    ecosystems: dict[str, Path], tmp_path: Path
) -> None:
    eco = ecosystems["separate"]
    out = tmp_path / "alertmanager.yml"
    api = "http://telegram-bot-api:8081"
    assert_ok(alertmanager_config(eco, out, **ALERTS_ENV, ALERTS_API_URL=api), "entrypoint")
    assert_ok(run([amtool(), "check-config", str(out)], tmp_path, timeout=30), "amtool")
    (receiver,) = load_yaml(out)["receivers"]
    (telegram,) = receiver["telegram_configs"]
    assert telegram["api_url"] == api
    assert telegram["bot_token"] == ALERTS_ENV["ALERTS_BOT_TOKEN"]
    assert telegram["chat_id"] == CHANNEL
    assert telegram["send_resolved"] is True and telegram["parse_mode"] == "HTML"
    assert out.stat().st_mode & 0o077 == 0, "the token is readable by its owner only"
    template = (monitoring(eco) / "alertmanager" / "alertmanager.yml.template").read_text()
    assert ALERTS_ENV["ALERTS_BOT_TOKEN"] not in template


@MONITORING
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALERTS_CHAT_ID": "-100"}, "ALERTS_BOT_TOKEN must be a bot token"),
        ({**ALERTS_ENV, "ALERTS_BOT_TOKEN": "12|3:x"}, "ALERTS_BOT_TOKEN must be a bot token"),
        ({**ALERTS_ENV, "ALERTS_CHAT_ID": "@channel"}, "ALERTS_CHAT_ID must be a numeric chat"),
        ({**ALERTS_ENV, "ALERTS_API_URL": "telegram-bot-api:8081"}, "ALERTS_API_URL must be"),
        ({**ALERTS_ENV, "ALERTS_API_URL": "http://x|y"}, "ALERTS_API_URL must be"),
    ],
)
def test_bad_alerts_settings_are_named(
    ecosystems: dict[str, Path], tmp_path: Path, env: dict[str, str], message: str
) -> None:
    out = tmp_path / "alertmanager.yml"
    result = alertmanager_config(ecosystems["separate"], out, **env)
    assert result.returncode == 2 and message in result.stdout, result.stdout
    assert not out.exists()


@MONITORING
def test_dashboard_is_provisioned_from_the_prometheus_data_source(
    ecosystems: dict[str, Path],
) -> None:
    grafana = monitoring(ecosystems["separate"]) / "grafana"
    (source,) = load_yaml(grafana / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads((grafana / "dashboards" / "telegram-bots.json").read_text())
    titles = " / ".join(panel["title"] for panel in dashboard["panels"])
    for wanted in ("Updates", "Handler latency", "Bot API", "Analytics", "getUpdates"):
        assert wanted in titles
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def dashboard_queries(eco: Path) -> list[str]:
    path = monitoring(eco) / "grafana" / "dashboards" / "telegram-bots.json"
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    return [
        target["expr"].replace("$bot", ".+")  # the "All" value of the dashboard's variable
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


# ---------------------------------------------------------------- real servers


def fast_config(eco: Path, jobs: list[dict[str, Any]], alertmanager: int | None) -> dict[str, Any]:
    """The shipped prometheus.yml with 1-second intervals, these scrape jobs and alertmanager."""
    config = load_yaml(monitoring(eco) / "prometheus" / "prometheus.yml")
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"] = jobs
    if alertmanager is None:
        del config["alerting"]
    else:
        targets = [f"127.0.0.1:{alertmanager}"]
        config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": targets}]}]
    return config


def fast_rules(eco: Path) -> str:
    """alerts.yml with BotDown's 2 minutes made 2 seconds."""
    rules = load_yaml(monitoring(eco) / "prometheus" / "alerts.yml")
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "BotDown":
                rule["for"] = "2s"
    return yaml.safe_dump(rules)


@contextlib.asynccontextmanager
async def prometheus(config: dict[str, Any], rules: str) -> AsyncIterator[PrometheusServer]:
    server = PrometheusServer(config, {"alerts.yml": rules})
    try:
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.cleanup)


async def eventually(probe: Any, what: str, timeout: float = TIMEOUT, predicate: Any = bool) -> Any:
    """The first result of ``probe()`` that satisfies ``predicate`` (``probe`` runs in a thread:
    it does blocking HTTP)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await asyncio.to_thread(probe)
        if predicate(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        await asyncio.sleep(0.5)


def sample(server: PrometheusServer, expr: str) -> float | None:
    result = server.query(expr)
    return float(result[0]["value"][1]) if result else None


def sent_ok(api: Any, chat: int | None = None) -> int:
    calls = api.calls("sendMessage") if chat is None else api.calls("sendMessage", chat_id=chat)
    return sum(1 for call in calls if call.error_code is None)


@contextlib.asynccontextmanager
async def fake_apis() -> AsyncIterator[dict[str, Any]]:
    found = {
        slug: fake_bot_api.FakeBotAPI(f"{7101 + n}:monitoring-{slug}")
        for n, slug in enumerate(BOTS)
    }
    for api in found.values():
        await api.start()
    try:
        yield found
    finally:
        for api in found.values():
            await api.stop()


def bot_env(api: Any, database_url: str, slug: str, port: int, **extra: Any) -> dict[str, str]:  # noqa: F811
    env = {
        "DATABASE_URL": database_url,
        "ANALYTICS_FLUSH_SECONDS": "0.2",
        "RATE_LIMIT_SECONDS": "0",
        "LANGUAGE": "en",
        "BOT_SLUG": slug,
        "METRICS_PORT": port,
        **extra,
    }
    return {name: str(value) for name, value in env.items()}


async def send_starts(api: Any, users: range) -> None:
    for user in users:
        api.push_message("/start", user_id=user, first_name=f"U{user}")
    for user in users:
        await api.wait_for_call("sendMessage", timeout=TIMEOUT, chat_id=user)


@MONITORING
def test_prometheus_scrapes_polling_and_webhook_bots_and_the_dashboard_has_data(
    ecosystems: dict[str, Path],
    database_url: str,  # noqa: F811
) -> None:
    asyncio.run(
        _prometheus_scrapes_polling_and_webhook_bots_and_the_dashboard_has_data(
            ecosystems, database_url
        )
    )


async def _prometheus_scrapes_polling_and_webhook_bots_and_the_dashboard_has_data(
    ecosystems: dict[str, Path],
    database_url: str,  # noqa: F811
) -> None:
    async with fake_apis() as apis:
        eco = ecosystems["separate"]
        polling_api, webhook_api = apis["text-bot"], apis["shop-bot"]
        polling_port, webhook_port, hook_metrics = (servers.free_port() for _ in range(3))
        polling = bot_process.BotProcess(
            "text_bot",
            eco / "text-bot",
            polling_api,
            bot_env(polling_api, database_url, "text-bot", polling_port),
        )
        webhook = bot_process.BotProcess(
            "shop_bot",
            eco / "shop-bot",
            webhook_api,
            bot_env(
                webhook_api,
                database_url,
                "shop-bot",
                hook_metrics,
                RUN_MODE="webhook",
                WEBHOOK_BASE_URL=f"http://127.0.0.1:{webhook_port}",
                WEBHOOK_SECRET="w" * 40,
                WEBHOOK_LISTEN_PORT=webhook_port,
            ),
        )
        # The shipped job with loopback targets in place of Docker's DNS discovery (Prometheus
        # asks the resolver of /etc/resolv.conf, never /etc/hosts: no loopback name to use).
        job = copy.deepcopy(load_yaml(monitoring(eco) / "prometheus" / "prometheus.yml"))
        (scrape,) = job["scrape_configs"]
        del scrape["dns_sd_configs"], scrape["relabel_configs"]
        scrape["static_configs"] = [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"bot": slug}}
            for slug, port in (("text-bot", polling_port), ("shop-bot", hook_metrics))
        ]
        config = fast_config(eco, [scrape], None)
        async with polling, webhook, prometheus(config, fast_rules(eco)) as server:
            await send_starts(polling_api, range(500, 510))
            await send_starts(webhook_api, range(600, 604))
            polling_api.fail_next("sendMessage", error_code=403, description="Forbidden: blocked")
            polling_api.push_message("/start", user_id=511)
            await polling_api.wait_for_call("sendMessage", timeout=TIMEOUT, chat_id=511)

            for slug, api in (("text-bot", polling_api), ("shop-bot", webhook_api)):
                expr = f'sum(tgbot_api_requests_total{{bot="{slug}", {OK_SENT}}})'
                await eventually(
                    lambda expr=expr, api=api: (sample(server, expr), sent_ok(api)),
                    f"{slug}'s sendMessage ok count in Prometheus = the fake's",
                    predicate=lambda pair: pair[0] == pair[1],
                )
            forbidden = 'sum(tgbot_api_requests_total{bot="text-bot", outcome="forbidden"})'
            assert sample(server, forbidden) == 1
            updates = 'sum(tgbot_updates_total{bot="shop-bot", type="message"})'
            assert sample(server, updates) == 4
            ups = server.query('up{job="bots"}')
            assert len(ups) == 2 and all(item["value"][1] == "1" for item in ups)
            await eventually(
                lambda: sample(server, 'sum(tgbot_analytics_events_written_total{bot="text-bot"})'),
                "analytics written",
            )
            await asyncio.sleep(2)  # a few more scrapes: every rate has two points
            empty = [q for q in dashboard_queries(eco) if not server.query(q)]
            assert not empty, f"dashboard queries without data: {empty}"


@MONITORING
def test_a_killed_bot_is_reported_in_the_channel_and_resolved(
    ecosystems: dict[str, Path],
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    asyncio.run(
        _a_killed_bot_is_reported_in_the_channel_and_resolved(ecosystems, database_url, tmp_path)
    )


async def _a_killed_bot_is_reported_in_the_channel_and_resolved(
    ecosystems: dict[str, Path],
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with fake_apis() as apis:
        eco = ecosystems["separate"]
        api = apis["text-bot"]
        port = servers.free_port()
        env = bot_env(api, database_url, "text-bot", port)
        am_config = tmp_path / "alertmanager.yml"
        alerts_env = {
            "ALERTS_BOT_TOKEN": api.token,
            "ALERTS_CHAT_ID": str(CHANNEL),
            "ALERTS_API_URL": api.base_url,  # as TELEGRAM_API_BASE_URL: the Bot API server used
        }
        assert_ok(alertmanager_config(eco, am_config, **alerts_env), "alertmanager entrypoint")
        config = load_yaml(am_config)
        config["route"] |= {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
        am_config.write_text(yaml.safe_dump(config), encoding="utf-8")
        manager = AlertmanagerServer(am_config)
        try:
            await asyncio.to_thread(manager.start)
            job = {
                "job_name": "bots",
                "honor_labels": True,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"bot": "text-bot"}}
                ],
            }
            rules = fast_rules(eco)
            async with prometheus(fast_config(eco, [job], manager.port), rules) as server:
                first = bot_process.BotProcess("text_bot", eco / "text-bot", api, env)
                async with first:
                    await eventually(lambda: sample(server, "up") == 1, "the bot scraped")
                    await first.stop(signal.SIGKILL)
                firing = await api.wait_for_call("sendMessage", timeout=TIMEOUT, chat_id=CHANNEL)
                text = str(firing.result["text"])
                assert re.search(r"Firing.*BotDown", text), text
                assert "text-bot is down" in text
                api.clear_calls()
                async with bot_process.BotProcess("text_bot", eco / "text-bot", api, env):
                    resolved_call = await api.wait_for_call(
                        "sendMessage", timeout=TIMEOUT, chat_id=CHANNEL
                    )
                    text = str(resolved_call.result["text"])
                    assert re.search(r"Resolved.*BotDown", text), text
                    assert "text-bot" in text
        finally:
            await asyncio.to_thread(manager.cleanup)


@MONITORING
def test_three_bots_under_the_host_are_scraped_each_with_its_label(
    ecosystems: dict[str, Path],
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    asyncio.run(
        _three_bots_under_the_host_are_scraped_each_with_its_label(
            ecosystems, database_url, tmp_path
        )
    )


async def _three_bots_under_the_host_are_scraped_each_with_its_label(
    ecosystems: dict[str, Path],
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with fake_apis() as apis:
        eco = ecosystems["host"]
        base = servers.free_port()
        while any(servers.free_port() == base + n for n in range(1, len(BOTS))):
            base = servers.free_port()
        for slug, api in apis.items():
            values = bot_env(api, database_url, slug, 0)
            values |= {"BOT_TOKEN": api.token, "TELEGRAM_API_BASE_URL": api.base_url}
            values.pop("METRICS_PORT")  # the host gives each child its port
            example = eco / slug / ".env.example"
            (eco / slug / ".env").write_text(fill_env_example(example, values), "utf-8")
        host = HostProcess(eco, list(BOTS), tmp_path / "health", HOST_METRICS_PORT=str(base))
        scrape = copy.deepcopy(load_yaml(monitoring(eco) / "prometheus" / "prometheus.yml"))
        (job,) = scrape["scrape_configs"]
        for n, config in enumerate(job["static_configs"]):
            config["targets"] = [f"127.0.0.1:{base + n}"]
        async with host.running():
            for api in apis.values():
                await api.wait_for_polling(timeout=TIMEOUT)
            async with prometheus(fast_config(eco, [job], None), fast_rules(eco)) as server:
                for n, api in enumerate(apis.values()):
                    await send_starts(api, range(700 + 10 * n, 700 + 10 * n + n + 1))
                for slug, api in apis.items():
                    expr = f'sum(tgbot_api_requests_total{{bot="{slug}", method="sendMessage"}})'
                    await eventually(
                        lambda expr=expr, api=api: (sample(server, expr), sent_ok(api)),
                        f"{slug} counted as its fake saw",
                        predicate=lambda pair: pair[0] == pair[1],
                    )
                ups = {item["metric"]["bot"]: item["value"][1] for item in server.query("up")}
                assert ups == dict.fromkeys(BOTS, "1")
                pids = {
                    item["metric"]["bot"]: item["value"][1]
                    for item in server.query("process_start_time_seconds")
                }
                assert set(pids) == set(BOTS), "each child reports its own process"
            assert await host.stop() == 0


def test_host_metrics_ports_follow_the_bots_order() -> None:
    child = load_host_child()
    assert child.metrics_ports({"HOST_METRICS_PORT": "9101"}, ["a", "b"]) == {
        "a": 9101,
        "b": 9102,
    }
    assert child.metrics_ports({}, ["a"]) == {}
    assert child.metrics_ports({"HOST_METRICS_PORT": "0"}, ["a"]) == {}
    for bad in ("x", "65535", "-1"):
        with pytest.raises(ValueError, match="HOST_METRICS_PORT must be a port number"):
            child.metrics_ports({"HOST_METRICS_PORT": bad}, ["a", "b"])
    env, _ = child.child_environment(
        {"ALL_BOTS_METRICS_PORT": "1", "ALL_BOTS_BOT_SLUG": "x"}, Path("/tmp/h"), ("a", 9101)
    )
    assert (env["METRICS_PORT"], env["METRICS_HOST"], env["BOT_SLUG"]) == ("9101", "0.0.0.0", "a")


def load_host_child() -> Any:
    import importlib
    import sys

    from devkit.render import REPO_ROOT

    path = str(REPO_ROOT / "ecosystem")
    if path not in sys.path:
        sys.path.append(path)
    return importlib.import_module("ecosystem_host.child")
