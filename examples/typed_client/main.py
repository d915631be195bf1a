"""A partner's tool on the generated, typed Ketenpoort client.

Environment: ``KETENPOORT_URL`` (e.g. http://127.0.0.1:8000/graphql), ``KETENPOORT_TOKEN`` (a
bearer token of the NVIK, role analist, purpose TOEZICHT_VW), ``VNUMMER`` (a person). Prints the
answer as JSON; exits 1 with the error codes (``extensions.code``) when the gateway refuses.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from ketenpoort_client import (
    GraphQLClientGraphQLMultiError,
    GraphQLClientHttpError,
    KetenpoortClient,
)


async def main() -> int:
    client = KetenpoortClient(
        url=os.environ["KETENPOORT_URL"],
        headers={
            "Authorization": f"Bearer {os.environ['KETENPOORT_TOKEN']}",
            # Every request declares its purpose and processing activity.
            "X-Doelbinding": "TOEZICHT_VW",
            "X-Verwerking": "nvik-toezicht-vw",
            "Accept": "application/graphql-response+json, application/json;q=0.9",
        },
    )
    try:
        result = await client.persoon(vnummer=os.environ["VNUMMER"])
    except GraphQLClientGraphQLMultiError as refused:  # answered, with errors
        codes = [(e.extensions or {}).get("code") for e in refused.errors]
        print(json.dumps({"refused": codes}), file=sys.stderr)
        return 1
    except GraphQLClientHttpError as refused:  # refused as a whole: 401, 403, 429, ...
        errors = refused.response.json().get("errors", [])
        codes = [e.get("extensions", {}).get("code") for e in errors]
        print(json.dumps({"status": refused.status_code, "refused": codes}), file=sys.stderr)
        return 1
    person = result.vreemdeling
    if person is None:
        print(json.dumps({"vreemdeling": None}))
        return 0
    # Typed all the way down: a date is a datetime.date, optional parts are Optional.
    born = person.geboorte.datum if person.geboorte else None
    print(
        json.dumps(
            {
                "vnummer": person.vnummer,
                "geslachtsnaam": person.naam.geslachtsnaam if person.naam else None,
                "geboortedatum": born.isoformat() if born else None,
                "geboortejaar": born.year if born else None,
                "verblijfsstatus": person.verblijfsstatus.soort if person.verblijfsstatus else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
