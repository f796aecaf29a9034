"""Generated session events: a Taobao-like behaviour log with a chosen number of events per session.

Columns (CSV, no header), as ``../shared/data``'s Taobao sample: ``user_id, item_id, category_id,
behavior_type, timestamp`` (unix seconds). Each user has ``sessions`` sessions of
``events_per_session`` events; events of a session are ``step`` seconds apart and sessions of a
user are ``pause`` seconds apart (choose ``step <= gap < pause`` for ``spec.source.session.gap``
to find them exactly). The log is in time order across users, as a click log is, so a session
job has to group it. Deterministic in ``seed``; numpy throughout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLUMNS = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
_BEHAVIOURS = np.array(["pv", "cart", "fav", "buy"])
_BEHAVIOUR_P = [0.89, 0.055, 0.03, 0.025]
START = 1_511_539_200  # 2017-11-25T00:00:00Z, the Taobao sample's first day


def session_events(
    users: int,
    sessions: int,
    events_per_session: int,
    *,
    items: int = 50_000,
    categories: int = 2_000,
    step: int = 30,
    pause: int = 7_200,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The log's columns, in time order (ties by user)."""
    rng = np.random.default_rng(seed)
    per_user = sessions * events_per_session
    n = users * per_user
    user = np.repeat(np.arange(1, users + 1, dtype=np.int64), per_user)
    session = np.tile(np.repeat(np.arange(sessions, dtype=np.int64), events_per_session), users)
    event = np.tile(np.arange(events_per_session, dtype=np.int64), users * sessions)
    offset = rng.integers(0, pause, size=users)[user - 1]  # users start at different times
    time = START + offset + session * (pause + events_per_session * step) + event * step
    item = rng.zipf(1.3, size=n) % items + 1
    category = item * 7919 % categories + 1
    behaviour = _BEHAVIOURS[rng.choice(len(_BEHAVIOURS), size=n, p=_BEHAVIOUR_P)]
    order = np.lexsort((user, time))
    return {
        "user_id": user[order],
        "item_id": item[order],
        "category_id": category[order],
        "behavior_type": behaviour[order],
        "timestamp": time[order],
    }


def write_session_events(path: Path, users: int, sessions: int, events_per_session: int, **kw) -> Path:
    """The log as a headerless CSV at ``path`` (see :func:`session_events`)."""
    cols = session_events(users, sessions, events_per_session, **kw)
    text = np.char.add(cols["user_id"].astype(str), ",")
    for name in COLUMNS[1:]:
        text = np.char.add(np.char.add(text, cols[name].astype(str)), "," if name != COLUMNS[-1] else "\n")
    path.write_text("".join(text.tolist()))
    return path


__all__ = ["COLUMNS", "session_events", "write_session_events"]
