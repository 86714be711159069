"""Seeded traffic, generated one simulated hour at a time.

The workload depends only on the scenario (seed, tenants, traffic, start,
duration), never on how the gateway answers: two policies replayed on one
scenario see the same sessions, at the same moments, with the same user
messages. Each hour is drawn from its own generator (seed, hour index), so
an hour can be produced without the ones before it and a month of traffic
never sits in memory at once. Draws are vectorised with numpy: generating a
million messages costs about a second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import numpy as np

from ..models import MAX_CONTENT_CHARS
from .scenario import Distribution, Scenario

__all__ = ["HOUR_S", "MessagePlan", "SessionPlan", "Workload", "draw"]

HOUR_S = 3600.0

_SENTENCES = (
    "Hi, I have a question about my last invoice.", "Can you tell me why I was charged twice this month?",
    "My order has not arrived yet and the tracking page shows nothing.", "How do I change my delivery address?",
    "I would like to upgrade my plan to the premium tier.", "The app crashes every time I upload a photo.",
    "Is there a discount if I pay for the whole year?", "Please cancel my subscription at the end of the month.",
    "I forgot my password and the reset email never came.", "What are your opening hours during the holidays?",
    "Could you send me a copy of the contract we signed?", "The dashboard shows the wrong currency for my account.",
    "We are a team of twenty people, which plan fits us best?", "I need an invoice with our VAT number on it.",
    "The export button gives me an empty file.", "Thanks, that helped a lot.", "Can I talk to a human, please?",
    "Our integration returns an authentication error since this morning.", "Where can I download my receipts?",
    "How long does a refund usually take?", "I moved to a new office, please update the billing address.",
    "Is my data stored in Europe?", "The mobile app logs me out every few minutes.", "Can I add a second user?",
)
_CORPUS = " ".join(_SENTENCES * 4)
_STARTS = np.array([i for i in range(len(_CORPUS)) if i == 0 or (_CORPUS[i - 1] == " " and _CORPUS[i - 2] in ".?!,")],
                   dtype=np.int64)
_STARTS = _STARTS[len(_CORPUS) // 2 > _STARTS]


# One customer message, a plain tuple because a month holds millions of them:
# (index, think_s: wait after the previous reply, content, voice: -1 for chat else the clip
#  to send, retry_after_s: > 0 when the client sends it again with the same key, keyed: has a key)
MessagePlan = tuple[int, float, str, int, float, bool]


@dataclass(slots=True)
class SessionPlan:
    index: int
    tenant: int
    agent: int
    offset_s: float  # since the scenario start
    messages: list[MessagePlan]


def draw(rng: np.random.Generator, dist: Distribution, n: int) -> np.ndarray:
    """``n`` values of a scenario distribution, clipped to its [min, max]."""
    if dist.shape == "fixed":
        values = np.full(n, dist.mean)
    elif dist.shape == "uniform":
        values = rng.uniform(dist.min, 2 * dist.mean - dist.min, n)
    elif dist.shape == "exponential":
        values = dist.min + rng.exponential(max(dist.mean - dist.min, 1e-9), n)
    elif dist.shape == "poisson":
        values = dist.min + rng.poisson(max(dist.mean - dist.min, 0.0), n)
    else:  # lognormal whose mean is ``mean``
        sigma = dist.spread
        values = rng.lognormal(np.log(dist.mean) - sigma * sigma / 2, sigma, n)
    return cast("np.ndarray", np.clip(values, dist.min, dist.max))


def _text(start: int, chars: int) -> str:
    chars = min(chars, MAX_CONTENT_CHARS)
    text = _CORPUS[start:start + chars]
    while len(text) < chars:  # longer than the corpus: keep going round it
        text += " " + _CORPUS[: chars - len(text) - 1]
    return text.strip() or "Hello?"


class Workload:
    """The scenario's sessions, hour by hour, with their messages."""

    def __init__(self, scenario: Scenario, voice_clips: int = 6, share: tuple[int, int] = (0, 1)) -> None:
        """``share`` = (k, n): build only the sessions whose index is k modulo n (one gateway instance's).

        Every draw is still made for all sessions, so indexes, contents and
        the digest are those of the whole traffic whatever the share.
        """
        self.scenario = scenario
        self.tenants = scenario.tenant_plans()
        self.voice_clips = voice_clips
        self.share = share
        self.hours = int(np.ceil(scenario.duration.total_seconds() / HOUR_S))
        self._digest = hashlib.sha256()
        self._next_session = 0
        self._next_message = 0

    @property
    def digest(self) -> str:
        """Hash of every session and message generated so far (identical traffic, identical digest)."""
        return self._digest.hexdigest()

    def sessions(self) -> Iterator[list[SessionPlan]]:
        """Each simulated hour's sessions, ordered by start time."""
        for hour in range(self.hours):
            yield self.hour(hour)

    def hour(self, hour: int) -> list[SessionPlan]:
        sc, traffic = self.scenario, self.scenario.traffic
        rng = np.random.default_rng([sc.seed, hour])
        span = min(HOUR_S, sc.duration.total_seconds() - hour * HOUR_S)
        level = traffic.daily_profile.factor(sc.start + timedelta(seconds=hour * HOUR_S))
        rows: list[tuple[float, int, int]] = []
        for t, tenant in enumerate(self.tenants):
            lam = traffic.sessions_per_hour * tenant.scale * level * span / HOUR_S
            count = int(rng.poisson(lam)) if lam > 0 else 0
            if not count:
                continue
            shares = np.array([a.share for a in tenant.agents])
            agents = rng.choice(len(shares), size=count, p=shares / shares.sum())
            offsets = hour * HOUR_S + rng.uniform(0, span, count)
            rows.extend(zip(offsets.tolist(), [t] * count, agents.tolist(), strict=True))
        rows.sort()
        n = len(rows)
        if not n:
            return []
        lengths = draw(rng, traffic.messages_per_session, n).astype(np.int64)
        total = int(lengths.sum())
        chars = draw(rng, traffic.message_chars, total).astype(np.int64)
        think = draw(rng, traffic.think_time_s, total)
        starts = _STARTS[rng.integers(0, len(_STARTS), total)]
        voice = np.where(rng.random(total) < traffic.voice_share, rng.integers(0, self.voice_clips, total), -1)
        low, high = traffic.client_retry_after_s
        retry = np.where(rng.random(total) < traffic.client_retry_share, rng.uniform(low, high, total) + 1e-3, 0.0)
        keyed = rng.random(total) < traffic.idempotency_share
        self._digest.update(np.array(rows).tobytes() + lengths.tobytes() + chars.tobytes() + think.tobytes()
                            + starts.tobytes() + voice.tobytes() + retry.tobytes() + keyed.tobytes())
        think_l, chars_l, starts_l = think.tolist(), chars.tolist(), starts.tolist()
        voice_l, retry_l, keyed_l = voice.tolist(), retry.tolist(), keyed.tolist()
        first = self._next_message
        self._next_message += total
        mine, of = self.share
        plans, cursor = [], 0
        for (offset, tenant_no, agent), length in zip(rows, lengths.tolist(), strict=True):
            if self._next_session % of == mine:
                indices = range(cursor, cursor + length)
                messages = [(first + i, think_l[i], _text(starts_l[i], chars_l[i]), voice_l[i], retry_l[i], keyed_l[i])
                            for i in indices]
                plans.append(SessionPlan(self._next_session, tenant_no, agent, offset, messages))
            cursor += length
            self._next_session += 1
        return plans
