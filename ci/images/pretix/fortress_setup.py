"""Create organizer/event/item/quota + API token for the Fortress lab, idempotently.

Run:  `pretix-entrypoint setup` in the fortress/pretix image (DJANGO_SETTINGS_MODULE=fortress_settings)

Env:  FORTRESS_QUOTA (default 100), FORTRESS_PRICE (default 0.00 = free, no payment step),
      FORTRESS_API_TOKEN (optional fixed token, 64 chars max)
"""
import json, os
from datetime import timedelta
from decimal import Decimal

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pretix.settings")
    import django
    django.setup()

from django.utils.timezone import now
from django_scopes import scopes_disabled
from pretix.base.models import Event, Item, Organizer, Quota, Team, TeamAPIToken
from pretix.base.settings import GlobalSettingsObject

QUOTA = int(os.environ.get("FORTRESS_QUOTA", "100"))
PRICE = Decimal(os.environ.get("FORTRESS_PRICE", "0.00"))

with scopes_disabled():
    gs = GlobalSettingsObject()
    gs.settings.set("update_check_perform", False)  # never phone home (only runs from runperiodic anyway)

    org, _ = Organizer.objects.get_or_create(slug="fortress", defaults={"name": "Fortress Lab"})
    team, _ = Team.objects.get_or_create(
        organizer=org, name="fortress-api",
        defaults=dict(all_events=True, all_event_permissions=True, all_organizer_permissions=True),
    )
    tok = team.tokens.filter(name="fortress").first()
    if not tok:
        kw = {"token": os.environ["FORTRESS_API_TOKEN"]} if os.environ.get("FORTRESS_API_TOKEN") else {}
        tok = TeamAPIToken.objects.create(team=team, name="fortress", **kw)

    ev = Event.objects.filter(organizer=org, slug="rush").first()
    if not ev:
        ev = Event.objects.create(
            organizer=org, slug="rush", name="Fortress Rush", currency="EUR",
            date_from=now() + timedelta(days=30), live=True,
            plugins="pretix.plugins.sendmail,pretix.plugins.statistics,pretix.plugins.checkinlists,pretix.plugins.banktransfer",
        )
        ev.set_defaults()
        ev.settings.set("payment_banktransfer__enabled", True)   # only needed when PRICE > 0 (web checkout)
        ev.settings.set("attendee_names_asked", False)
    item, _ = Item.objects.get_or_create(
        event=ev, name="Ticket", defaults=dict(default_price=PRICE, admission=True, active=True))
    quota, created = Quota.objects.get_or_create(event=ev, name="Tickets", defaults=dict(size=QUOTA))
    if created:
        quota.items.add(item)
    elif quota.size != QUOTA:
        quota.size = QUOTA
        quota.save(update_fields=["size"])

    # The token is a secret: it is never printed (container logs end up in run folders).
    print(json.dumps({"organizer": org.slug, "event": ev.slug, "item": item.pk,
                      "quota": quota.pk, "quota_size": quota.size, "token_set": bool(tok.token)}))
