"""Text sampler for synthetic scene-text crops.

The mix imitates what word crops in the wild contain (see ``docs/synth.md``): mostly dictionary words in
lower / Capitalised / UPPER case, then numbers, codes and licence plates, prices, random ASCII, dates and
times, URLs and @handles. All output is printable ASCII.
"""

from __future__ import annotations

import bisect
import random
import string
from collections.abc import Callable, Sequence

import numpy as np

PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
"""All printable ASCII characters (space included)."""

_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_UPPER = string.ascii_uppercase
_LOWER = string.ascii_lowercase
_DIGITS = string.digits
_ALNUM = _UPPER + _LOWER + _DIGITS

# A small built-in vocabulary for machines without a resource pack (CI, smoke tests).
BUILTIN_WORDS: tuple[str, ...] = tuple(
    """
    the of and to in is it you that he was for on are with as his they be at one have this from or had by
    word but what some we can out other were all there when up use your how said an each she which do their
    time if will way about many then them write would like so these her long make thing see him two has look
    more day could go come did number sound no most people my over know water than call first who may down
    side been now find any new work part take get place made live where after back little only round man year
    came show every good me give our under name very through just form sentence great think say help low line
    differ turn cause much mean before move right boy old too same tell does set three want air well also play
    small end put home read hand port large spell add even land here must big high such follow act why ask men
    change went light kind off need house picture try us again animal point mother world near build self earth
    father head stand own page should country found answer school grow study still learn plant cover food sun
    four between state keep eye never last let thought city tree cross farm hard start might story saw far sea
    draw left late run while press close night real life few north open seem together next white children
    begin got walk example ease paper group always music those both mark often letter until mile river car
    feet care second book carry took science eat room friend began idea fish mountain stop once base hear
    horse cut sure watch color face wood main enough plain girl usual young ready above ever red list though
    feel talk bird soon body dog family direct pose leave song measure door product black short numeral class
    wind question happen complete ship area half rock order fire south problem piece told knew pass since top
    whole king space heard best hour better true during hundred five remember step early hold west ground
    interest reach fast verb sing listen six table travel less morning ten simple several vowel toward war lay
    against pattern slow center love person money serve appear road map rain rule govern pull cold notice
    voice unit power town fine certain fly fall lead cry dark machine note wait plan figure star box noun
    field rest correct able pound done beauty drive stood contain front teach week final gave green quick
    develop ocean warm free minute strong special mind behind clear tail produce fact street inch multiply
    nothing course stay wheel full force blue object decide surface deep moon island foot system busy test
    record boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape equate
    miss brought heat snow tire bring yes distant fill east paint language among hotel coffee pizza bank
    taxi parking exit entrance open closed sale police station market restaurant pharmacy bakery museum
    hospital airport garden avenue street bridge ticket office service center cafe bar club shop store
    """.split()
)

_TLDS = ("com", "org", "net", "io", "co", "de", "uk", "fr", "info", "biz", "edu", "gov", "app", "shop")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_CURRENCY_PREFIX = ("$", "$", "$", "USD ", "Rs.", "RM", "R$", "EUR ", "GBP ", "")
_CURRENCY_SUFFIX = ("", "", "", "$", "/-", " USD", ",-", "p", "c")

# (kind, probability); the mix from docs/synth.md section 2
DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("word", 0.62),
    ("number", 0.10),
    ("code", 0.07),
    ("price", 0.06),
    ("random", 0.06),
    ("date", 0.05),
    ("url", 0.04),
)


def _as_random(rng: random.Random | np.random.Generator | None, fallback: random.Random) -> random.Random:
    if rng is None:
        return fallback
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, np.random.Generator):
        return random.Random(int(rng.integers(0, 2**63 - 1)))
    raise TypeError(f"rng must be random.Random or numpy.random.Generator, got {type(rng).__name__}")


def clean_words(words: Sequence[str], max_len: int = 25) -> list[str]:
    """Keep unique printable-ASCII words without spaces, 1..``max_len`` characters, order preserved."""
    seen: set[str] = set()
    out: list[str] = []
    for w in words:
        w = w.strip()
        if not w or len(w) > max_len or w in seen:
            continue
        if any(c not in PRINTABLE or c == " " for c in w):
            continue
        seen.add(w)
        out.append(w)
    return out


class TextSampler:
    """Draws label strings with a scene-text-like mix.

    Args:
        words: vocabulary for the ``word`` kind (non-ASCII / overlong entries are dropped).
        seed: seeds the internal generator used when :meth:`sample` is called without ``rng``.
        max_len: maximum label length (characters).
        charset: if given, every returned string only contains these characters (strings are re-drawn, then
            filtered as a last resort).
        fold_case: compare against ``charset`` case-insensitively (for case-insensitive recognisers; the caller
            lower-cases the label).
        mix: ``(kind, probability)`` pairs, kinds from :data:`DEFAULT_MIX`.
    """

    def __init__(
        self,
        words: Sequence[str],
        seed: int = 0,
        max_len: int = 25,
        charset: str | None = None,
        fold_case: bool = False,
        mix: Sequence[tuple[str, float]] = DEFAULT_MIX,
    ) -> None:
        if max_len < 1:
            raise ValueError("max_len must be >= 1")
        self.words = clean_words(words, max_len) or list(BUILTIN_WORDS)
        self.max_len = max_len
        self.fold_case = fold_case
        self.charset = charset
        self._allowed: frozenset[str] | None = None
        if charset is not None:
            allowed = set(charset) & set(PRINTABLE)
            if fold_case:
                allowed |= {c.upper() for c in allowed} | {c.lower() for c in allowed}
            if not allowed - {" "}:
                raise ValueError("charset must contain at least one printable non-space ASCII character")
            self._allowed = frozenset(allowed)
        self._rng = random.Random(seed)
        self._gen = self._generators()
        kinds = [k for k, _ in mix]
        unknown = set(kinds) - set(self._gen)
        if unknown:
            raise ValueError(f"unknown text kinds in mix: {sorted(unknown)}")
        total = float(sum(p for _, p in mix))
        acc, self._cum = 0.0, []
        for _, p in mix:
            acc += p / total
            self._cum.append(acc)
        self._kinds = kinds

    # ------------------------------------------------------------------ public
    def sample(
        self,
        rng: random.Random | np.random.Generator | None = None,
        upper: bool = False,
        kinds: Sequence[str] | None = None,
    ) -> str:
        """Return one label string (printable ASCII, 1..max_len characters, within ``charset`` if set).

        Args:
            rng: random source (``random.Random`` preferred; a NumPy Generator also works). ``None`` uses the
                sampler's own seeded generator.
            upper: upper-case the text (for caps-only fonts) before the charset check.
            kinds: only draw these kinds (e.g. ``("number", "price", "date")`` for 7-segment faces).
        """
        r = _as_random(rng, self._rng)
        text = ""
        for _ in range(12):
            text = self._gen[r.choice(kinds)](r) if kinds else self._draw(r)
            if upper:
                text = text.upper()
            if self._ok(text):
                return text
        return self._force(text, r, upper)

    def sample_kind(self, kind: str, rng: random.Random) -> str:
        """Draw one raw string of a given kind (no charset filtering, may need trimming)."""
        return self._gen[kind](rng)

    # ----------------------------------------------------------------- helpers
    def _ok(self, text: str) -> bool:
        if not text or len(text) > self.max_len or text[0] == " " or text[-1] == " ":
            return False
        if self._allowed is not None:
            return all(c in self._allowed for c in text)
        return True

    def _force(self, text: str, r: random.Random, upper: bool) -> str:
        allowed = self._allowed
        chars = [c for c in text if allowed is None or c in allowed]
        text = " ".join("".join(chars).split())[: self.max_len].strip()
        if text:
            return text
        pool = sorted((allowed or frozenset(PRINTABLE)) - {" "})
        if upper:
            up = [c for c in pool if not c.islower()]
            pool = up or pool
        n = r.randint(1, min(8, self.max_len))
        return "".join(r.choice(pool) for _ in range(n))

    def _draw(self, r: random.Random) -> str:
        k = min(bisect.bisect_left(self._cum, r.random()), len(self._kinds) - 1)
        return self._gen[self._kinds[k]](r)

    def _generators(self) -> dict[str, Callable[[random.Random], str]]:
        return {
            "word": self._word,
            "number": self._number,
            "code": self._code,
            "price": self._price,
            "random": self._random_ascii,
            "date": self._date,
            "url": self._url,
        }

    def _pick_word(self, r: random.Random) -> str:
        return self.words[r.randrange(len(self.words))]

    def _case(self, w: str, r: random.Random) -> str:
        u = r.random()
        if u < 0.45:
            return w if not w.islower() and r.random() < 0.5 else w.lower()
        if u < 0.75:
            return w[:1].upper() + w[1:]
        return w.upper()

    def _word(self, r: random.Random) -> str:
        w = self._case(self._pick_word(r), r)
        u = r.random()
        if u < 0.06:  # compound
            w2 = self._pick_word(r)
            w2 = w2.upper() if w.isupper() else (w2.capitalize() if w[:1].isupper() and r.random() < 0.5 else w2)
            w = w + r.choice(("-", "-", "/", "&", "'", "")) + w2
        elif u < 0.16:  # trailing / wrapping punctuation
            p = r.choice((".", ",", ":", ";", "!", "?", "!!", "...", "'s", ")", '"', "'"))
            w = w + p
            if p in (")", '"', "'") and r.random() < 0.7:
                w = {")": "(", '"': '"', "'": "'"}[p] + w
        elif u < 0.19:  # word with digits (model numbers, "4you")
            d = str(r.randint(0, 999))
            w = w + d if r.random() < 0.7 else d + w
        elif u < 0.21:  # two words with a space
            w = w + " " + self._case(self._pick_word(r), r)
        return w

    def _number(self, r: random.Random) -> str:
        u = r.random()
        if u < 0.35:
            return str(int(10 ** r.uniform(0, 6)))
        if u < 0.45:
            return f"{int(10 ** r.uniform(3, 7)):,}"
        if u < 0.6:
            return f"{r.uniform(0, 10 ** r.randint(1, 4)):.{r.randint(1, 2)}f}"
        if u < 0.7:
            return f"{r.randint(0, 100)}%"
        if u < 0.78:
            n = r.randint(1, 99)
            suf = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
            return f"{n}{suf}"
        if u < 0.9:  # phone-like
            parts = [str(r.randint(10 ** (k - 1), 10**k - 1)) for k in r.choice(((3, 4), (3, 3, 4), (2, 4, 4)))]
            sep = r.choice(("-", " ", ".", ""))
            s = sep.join(parts)
            return "+" + s if r.random() < 0.15 else s
        if u < 0.95:
            return f"-{r.randint(1, 999)}"
        return f"No.{r.randint(1, 999)}" if r.random() < 0.5 else f"#{r.randint(1, 9999)}"

    def _code(self, r: random.Random) -> str:
        pattern = r.choice(
            (
                "LLddLLL",  # UK-like plate
                "dLLLddd",
                "LL-dd-LL-dddd",
                "LLL-dddd",
                "LLL ddd",
                "Ldd LLL",
                "LLdddd",  # flight numbers
                "dd-dddd",
                "LLL-dd",
                "Ld-dddd-L",
                "xxxxxx",
                "xxxx-xxxx",
                "ddddd",
                "LdLdLd",
            )
        )
        out = []
        for ch in pattern:
            if ch == "L":
                out.append(r.choice(_UPPER))
            elif ch == "d":
                out.append(r.choice(_DIGITS))
            elif ch == "x":
                out.append(r.choice(_UPPER + _DIGITS))
            else:
                out.append(ch)
        s = "".join(out)
        return s.lower() if r.random() < 0.05 else s

    def _price(self, r: random.Random) -> str:
        u = r.random()
        if u < 0.5:
            v = f"{r.uniform(0, 10 ** r.randint(1, 3)):.2f}"
        elif u < 0.8:
            v = str(r.randint(1, 999))
        else:
            v = f"{r.randint(1, 99)},{r.randint(0, 99):02d}" if r.random() < 0.5 else f"{r.randint(1000, 99999):,}"
        pre = r.choice(_CURRENCY_PREFIX)
        suf = r.choice(_CURRENCY_SUFFIX) if not pre or r.random() < 0.1 else ""
        if r.random() < 0.1:
            v = v.split(".")[0] + ".-" if "." in v else v + ".-"
        return f"{pre}{v}{suf}"

    def _random_ascii(self, r: random.Random) -> str:
        n = r.randint(1, 12)
        u = r.random()
        if u < 0.4:
            pool = _ALNUM
        elif u < 0.7:
            pool = _ALNUM + _PUNCT
        elif u < 0.85:
            pool = _UPPER + _DIGITS
        else:
            pool = _LOWER
        return "".join(r.choice(pool) for _ in range(n))

    def _date(self, r: random.Random) -> str:
        y, m, d = r.randint(1950, 2035), r.randint(1, 12), r.randint(1, 28)
        hh, mm = r.randint(0, 23), r.randint(0, 59)
        u = r.random()
        if u < 0.2:
            return f"{d:02d}/{m:02d}/{y}" if r.random() < 0.5 else f"{m}/{d}/{y % 100:02d}"
        if u < 0.32:
            return f"{y}-{m:02d}-{d:02d}"
        if u < 0.42:
            return f"{d:02d}.{m:02d}.{y}"
        if u < 0.62:
            return f"{hh:02d}:{mm:02d}" if r.random() < 0.7 else f"{hh:02d}:{mm:02d}:{r.randint(0, 59):02d}"
        if u < 0.74:
            return f"{r.randint(1, 12)}:{mm:02d}{r.choice(('AM', 'PM', 'am', 'pm', ' AM', ' PM'))}"
        if u < 0.84:
            mon = r.choice(_MONTHS)
            mon = mon.upper() if r.random() < 0.4 else mon
            return f"{mon} {d}" if r.random() < 0.6 else f"{d}{mon.upper()}{y % 100:02d}"
        if u < 0.92:
            return r.choice(_DAYS).upper() if r.random() < 0.5 else r.choice(_DAYS)
        return f"{r.randint(1, 12)}{r.choice(('AM', 'PM', 'am', 'pm'))}"

    def _url(self, r: random.Random) -> str:
        w = self._pick_word(r).lower()
        u = r.random()
        if u < 0.3:
            return "@" + w + (str(r.randint(0, 99)) if r.random() < 0.4 else "")
        if u < 0.4:
            return "#" + (w.capitalize() if r.random() < 0.4 else w)
        if u < 0.75:
            pre = r.choice(("www.", "www.", "", "http://", "https://"))
            return f"{pre}{w}.{r.choice(_TLDS)}"
        if u < 0.9:
            user = r.choice(("info", "mail", "contact", "hello", w[:4]))
            return f"{user}@{self._pick_word(r).lower()}.{r.choice(_TLDS)}"
        return f"{w}.{r.choice(_TLDS)}/{self._pick_word(r).lower()}"
