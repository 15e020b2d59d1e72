"""The audit vocabulary (seed §3.10) and what a console activity looks like."""

from __future__ import annotations

from datetime import datetime

# resource_type/action pairs the seed lists as security-relevant (category=security).
SECURITY_EVENTS = frozenset(
    {
        ("session", "login"),
        ("session", "logout"),
        ("user", "register"),
        ("user", "update_profile"),
        ("user", "update_avatar"),
        ("user", "reset_password"),
        ("user", "delete_current_user"),
        ("user", "ban"),
        ("user", "activate"),
        ("token", "create"),
        ("token", "revoke"),
        ("token", "used"),
        ("api_key", "create"),
        ("api_key", "delete"),
        ("cluster", "kubeconfig_read"),
        ("cluster", "kubectl_exec"),
        ("system_settings", "update"),
        ("notification_settings", "update"),
        ("user", "link_identity"),
        # Who may do what: Kite roles and bk-bcs grants and usertokens.
        ("role", "create"),
        ("role", "update"),
        ("role", "delete"),
        ("role", "assign"),
        ("role", "unassign"),
        ("permission", "grant"),
        ("permission", "revoke"),
        ("bcs_user", "create"),
        ("bcs_user", "refresh_token"),
        ("bcs_register_token", "create"),
        ("bcs_credentials", "update"),
    }
)
CATEGORIES = frozenset({"security"})


def activity_type(resource_type: str, action: str) -> str:
    """``cluster/create_requested`` is shown as ``cluster_create_requested``."""
    return f"{resource_type}_{action}"


def relative_time(then: datetime, now: datetime) -> str:
    seconds = max(int((now - then).total_seconds()), 0)
    for size, unit in (
        (86400 * 365, "year"),
        (86400 * 30, "month"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
    ):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"
