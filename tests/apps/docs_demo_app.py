"""A realistic demo app for the documentation's dashboard screenshots.

Served by ``tests/browser/make_docs_screenshots.py`` (uvicorn in a subprocess),
never by the test suite.

* ``TASKFLOW_DATABASE_URL``: the database (required).
* ``DEMO_ADMIN_PASSWORD`` / ``DEMO_VIEWER_PASSWORD``: the two logins
  (``admin`` and ``viewer``, read-only).

``POST /demo/seed?part=1`` (or ``part=2``, from a second instance) enqueues a
mix of tasks through the manager, so they are real rows: successes of
every length, failures after retries, long runners, tasks waiting for a
retry and a cancelled one.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

from fastapi import FastAPI

from taskflow import TaskAdmin, TaskManager, task_log

task_manager = TaskManager(
    database_url=os.environ["TASKFLOW_DATABASE_URL"],
    lease_seconds=6.0,
    poll_interval=0.5,
    shutdown_grace=1.0,
)
app = FastAPI(title="Acme Ops")
TaskAdmin(
    app,
    task_manager,
    title="Acme Ops",
    display_func_args=True,
    auth=[
        ("admin", os.environ.get("DEMO_ADMIN_PASSWORD", "demo-admin-password")),
        ("viewer", os.environ.get("DEMO_VIEWER_PASSWORD", "demo-viewer-password"), "viewer"),
    ],
    secret_key="docs-demo-secret-key-0123456789abcdef0123",
    poll_interval=1.0,
)


class SMTPDeliveryError(Exception):
    """The mail relay refused a message."""


class UpstreamRateLimited(Exception):
    """The CRM answered 429 Too Many Requests."""


class UnsupportedImageError(OSError):
    """The uploaded file is not an image we can decode."""


# -- send_welcome_email ----------------------------------------------------------


def _smtp_send(sender: str, recipient: str, body: str) -> None:
    if recipient.endswith((".invalid", "@legacy-mail.example")):
        raise SMTPDeliveryError(
            f"550 5.1.1 <{recipient}>: Recipient address rejected: "
            "User unknown in virtual mailbox table"
        )


def _deliver(recipient: str, template: str) -> None:
    body = f"[{template}] Welcome to Acme!"
    _smtp_send("hello@acme.example", recipient, body)


@task_manager.task(retries=2, delay=0.2, backoff=2.0)
async def send_welcome_email(user_id: int, email: str) -> str:
    task_log(f"rendering template welcome_v3 for user {user_id}")
    await asyncio.sleep(random.uniform(0.02, 0.25))
    task_log(f"connecting to smtp.acme.example:587 as hello@acme.example for <{email}>")
    _deliver(email, "welcome_v3")
    task_log("250 2.0.0 Ok: queued as 4F2A81C3D1")
    return f"queued as 4F2A81C3D1 for {email}"


# -- generate_invoice_pdf --------------------------------------------------------


def _line_items(invoice_id: str, count: int) -> list[dict[str, Any]]:
    if count == 0:
        raise ValueError(f"invoice {invoice_id} has no line items; refusing to render an empty PDF")
    return [{"sku": f"SKU-{n:04d}", "qty": n % 3 + 1} for n in range(count)]


@task_manager.task(timeout=30.0)
async def generate_invoice_pdf(invoice_id: str, customer_id: int, items: int = 3) -> str:
    task_log(f"loading invoice {invoice_id} for customer {customer_id}")
    lines = _line_items(invoice_id, items)
    task_log(f"rendering {len(lines)} line items with template invoice-a4")
    await asyncio.sleep(random.uniform(0.3, 2.8))
    key = f"invoices/2024/{invoice_id}.pdf"
    task_log(f"uploaded s3://acme-billing/{key} ({random.randint(38, 220)} KiB)")
    return key


# -- sync_crm_contacts -----------------------------------------------------------


@task_manager.task(
    retries=5, delay=900.0, backoff=2.0, max_delay=3600.0, retry_on=UpstreamRateLimited
)
async def sync_crm_contacts(account: str, since: str, pages: int = 2) -> int:
    task_log(f"--- sync {account} since {since} ---")
    synced = 0
    for page in range(1, pages + 1):
        if account.startswith("globex") and page == 2:
            task_log("HTTP 429 from api.crm.example, Retry-After: 900")
            raise UpstreamRateLimited(
                f"GET https://api.crm.example/v2/contacts?page={page} returned 429 "
                "Too Many Requests (Retry-After: 900)"
            )
        await asyncio.sleep(random.uniform(0.05, 0.4) if pages < 10 else 20.0)
        batch = random.randint(40, 200)
        synced += batch
        task_log(f"page {page}/{pages}: {batch} contacts upserted")
    task_log(f"--- done: {synced} contacts ---")
    return synced


# -- resize_avatar (a thread) ------------------------------------------------------


def _decode(path: str) -> tuple[int, int]:
    if path.endswith(".heic"):
        raise UnsupportedImageError(f"cannot identify image file '{path}'")
    return 1024, 1024


@task_manager.task(executor="thread", retries=1, delay=0.1)
def resize_avatar(user_id: int, path: str, sizes: tuple[int, ...] = (64, 128, 256)) -> list[str]:
    width, height = _decode(path)
    task_log(f"decoded {path}: {width}x{height}")
    outputs = []
    for size in sizes:
        time.sleep(random.uniform(0.002, 0.05))
        outputs.append(f"avatars/{user_id}/{size}.webp")
        task_log(f"wrote avatars/{user_id}/{size}.webp")
    return outputs


# -- rebuild_search_index (high priority, long) -------------------------------------


@task_manager.task(priority=10, timeout=3600.0)
async def rebuild_search_index(index: str, shards: int = 4) -> str:
    task_log(f"--- rebuilding '{index}' on {shards} shards ---")
    for shard in range(shards):
        task_log(f"shard {shard}: reindexing from products_v7")
        await asyncio.sleep(0.6 if index == "help-center" else 600.0)
    task_log(f"swapped alias {index} -> {index}_v8")
    return f"{index}_v8"


# -- schedules ----------------------------------------------------------------------


@task_manager.schedule(cron="0 2 * * *", timezone="Europe/Berlin")
async def nightly_report(day: str = "yesterday") -> str:
    task_log(f"aggregating orders for {day}")
    await asyncio.sleep(random.uniform(0.5, 1.5))
    task_log("report mailed to ops@acme.example")
    return "reports/daily.pdf"


@task_manager.schedule(every=900, run_on_startup=True)
async def purge_expired_carts() -> int:
    await asyncio.sleep(0.15)
    task_log("deleted 37 carts idle for more than 72 h")
    return 37


# -- seeding --------------------------------------------------------------------------

FIRST_NAMES = ["ana", "bram", "chen", "dara", "emil", "fatima", "gus", "hana", "ivo", "jun"]
DOMAINS = ["gmail.com", "acme-customer.example", "outlook.com", "fastmail.com"]
ACCOUNTS = ["initech", "umbrella-eu", "stark-industries", "wayne-enterprises", "hooli"]


async def _emails(rng: random.Random, count: int, bad: int) -> list[str]:
    ids = []
    for n in range(count):
        name = rng.choice(FIRST_NAMES)
        domain = "legacy-mail.example" if n < bad else rng.choice(DOMAINS)
        tags = {"campaign": "signup"} if n % 3 == 0 else {"tenant": rng.choice(["eu", "us"])}
        ids.append(
            await task_manager.enqueue(
                send_welcome_email, 48_000 + rng.randint(0, 999), f"{name}@{domain}", tags=tags
            )
        )
    return ids


async def _invoices(rng: random.Random, count: int, empty: int) -> None:
    for n in range(count):
        invoice = f"INV-2024-{rng.randint(100, 999):04d}"
        tags = {"batch": "2024-06", "currency": rng.choice(["EUR", "USD"])}
        items = 0 if n < empty else rng.randint(1, 12)
        await task_manager.enqueue(
            generate_invoice_pdf, invoice, 7_000 + rng.randint(0, 999), items=items, tags=tags
        )


async def _avatars(rng: random.Random, count: int, bad: int) -> None:
    for n in range(count):
        user = 48_000 + rng.randint(0, 999)
        path = f"uploads/{user}/avatar.{'heic' if n < bad else rng.choice(['png', 'jpg'])}"
        await task_manager.enqueue(resize_avatar, user, path)


async def _crm(rng: random.Random, long_runs: int) -> list[str]:
    ids = []
    for account in [*ACCOUNTS, "globex-corp", "globex-apac"]:
        ids.append(await task_manager.enqueue(sync_crm_contacts, account, "2024-06-01T00:00Z"))
    for n in range(long_runs):
        account = f"{rng.choice(ACCOUNTS)}-archive-{n}"
        ids.append(
            await task_manager.enqueue(
                sync_crm_contacts, account, "2019-01-01T00:00Z", pages=40, tags={"full": True}
            )
        )
    return ids


async def _seed_first() -> dict[str, Any]:
    rng = random.Random(1)
    await _emails(rng, 14, bad=3)
    await _invoices(rng, 12, empty=2)
    await _avatars(rng, 12, bad=2)
    await _crm(rng, long_runs=1)
    for _ in range(3):
        await task_manager.enqueue(nightly_report, "2024-06-1" + str(rng.randint(0, 9)))
    await task_manager.enqueue(rebuild_search_index, "help-center", shards=2)
    await task_manager.enqueue(
        rebuild_search_index, "products", shards=8, tags={"reason": "deploy"}
    )
    # Started by mistake and cancelled at once.
    mistake = await task_manager.enqueue(
        sync_crm_contacts, "initech", "2010-01-01T00:00Z", pages=40, tags={"full": True}
    )
    await asyncio.sleep(0.3)
    await task_manager.cancel(mistake)
    return {"created": "first"}


async def _seed_second() -> dict[str, Any]:
    rng = random.Random(2)
    await _emails(rng, 10, bad=1)
    await _invoices(rng, 6, empty=1)
    await _avatars(rng, 8, bad=1)
    await _crm(rng, long_runs=1)
    return {"created": "second"}


@app.post("/demo/seed")
async def seed(part: int = 1) -> dict[str, Any]:
    return await (_seed_first() if part == 1 else _seed_second())
