"""The media bot's own fake Wildberries CDN as a container of the ecosystem's end-to-end tests.

Runs ``ecosystem_shared/testing/fake_wb_cdn.py`` of the rendered media bot (built from public
evidence of the CDN's layout; see that file) inside the media bot's own image, which has its
package and aiohttp, on port 8080. Every article in ``CDN_ARTICLES`` (comma-separated) has
``CDN_PHOTOS`` photos of ``CDN_PHOTO_SIZE`` bytes on the host the sample route map gives it.
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web
from fake_wb_cdn import FakeWbCdn


async def main() -> None:
    cdn = FakeWbCdn()
    photos, size = int(os.environ["CDN_PHOTOS"]), int(os.environ["CDN_PHOTO_SIZE"])
    for article in os.environ["CDN_ARTICLES"].split(","):
        cdn.add(int(article), photos=photos, photo_size=size)
    app = web.Application()
    app.router.add_get("/{host}/{path:.*}", cdn.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", 8080).start()  # nosec B104: inside its container
    print("fake Wildberries CDN listening on :8080", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
