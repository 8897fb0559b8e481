#!/usr/bin/env python3
"""Writes the tokenizer agreement corpus: one UTF-8 line per '\\n'.

Usage: make_corpus.py OUT [--lines N] [--seed S] [--no-special-literals]

Deterministic for a given machine (fixed seed, sorted file order): about half
real English (comments and docstrings of Debian's torch, code lines, license
texts), the rest synthetic lines aimed at the corners where tokenizers differ:
scripts and accents, case mapping, whitespace, control and format characters,
combining marks, emoji, numbers, contractions, punctuation, very long words,
random assigned code points from every plane, and literal special tokens.

No line contains '\\n' or '\\r'. Other line-breaking characters (U+0085,
U+2028, U+2029, U+000B, U+000C) do occur inside lines: readers must split on
'\\n' only (not Python's str.splitlines).
"""
import argparse
import ast
import glob
import os
import random
import sys
import unicodedata

TORCH_DIR = "/usr/lib/python3/dist-packages/torch"
LICENSE_DIR = "/usr/share/common-licenses"
MAX_SOURCE_FILES = 400  # a spread over torch's ~1100 files keeps this ~1 s


def clean(s):
    """A line can hold anything but the line separator and '\\r'."""
    return s.replace("\r", " ").replace("\n", " ")


# --- real text ---------------------------------------------------------------

def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def real_text():
    """(short lines, paragraphs) from torch sources and license texts."""
    lines, paragraphs, code = [], [], []
    files = sorted(glob.glob(os.path.join(TORCH_DIR, "**", "*.py"), recursive=True))
    step = max(1, len(files) // MAX_SOURCE_FILES)
    for path in files[::step]:
        src = read(path)
        for raw in src.split("\n"):
            s = raw.strip()
            if s.startswith("#") and len(s) > 3:
                lines.append(s.lstrip("#").strip())
            elif s and not s.startswith(("'''", '"""')):
                code.append(raw.rstrip())
        try:
            tree = ast.parse(src)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    for para in doc.split("\n\n"):
                        lines.extend(x.strip() for x in para.split("\n") if x.strip())
                        paragraphs.append(" ".join(x.strip() for x in para.split("\n")))
    for path in sorted(glob.glob(os.path.join(LICENSE_DIR, "*"))):
        if os.path.isfile(path):
            text = read(path)
            lines.extend(x for x in text.split("\n") if x.strip())  # indentation kept
            paragraphs.extend(" ".join(p.split()) for p in text.split("\n\n") if p.strip())
    return ([clean(x) for x in lines], [clean(x) for x in paragraphs if len(x) > 40],
            [clean(x) for x in code])


# --- synthetic text ----------------------------------------------------------

ACCENTED = [
    # French
    "Où est la bibliothèque ? Déjà vu, garçon, façade, naïve, cœur, œuvre, Noël, élève, hôtel",
    "L'été dernier, Éloïse a mangé une crème brûlée à Besançon — c'était très « raffiné ».",
    "ÇA NE VA PAS, dit-il ; À BIENTÔT ! Ôtez-vous de là, ÊTRE OU NE PAS ÊTRE",
    # German
    "Grüße aus München! Die Straße ist groß, der Fußgänger übermüdet, Äpfel und Öl",
    "STRASSE, GROẞ, Größenwahn, Schäferhund, Ärger, ÜBER, Maß, Weiß, Fußball",
    # Vietnamese (stacked diacritics, precomposed and decomposed)
    "Tiếng Việt có nhiều dấu: ắ ằ ẳ ẵ ặ ấ ầ ẩ ẫ ậ, Đà Nẵng, Hà Nội, Thành phố Hồ Chí Minh",
    "Nguyễn Thị Minh Khai, người ở Huế, nói: “Chúng tôi yêu tiếng mẹ đẻ.” ĐƯỜNG PHỐ",
    "Tie\u0302\u0301ng Vie\u0323\u0302t vie\u0302\u0301t ta\u0306\u0301t (decomposed)",
    # Polish
    "Zażółć gęślą jaźń. Łódź, Kraków, Wrocław, Gdańsk, Świętokrzyskie, ŹDŹBŁO, ŁÓDŹ",
    "Pchnąć w tę łódź jeża lub ośm skrzyń fig; Żółw, źrebię, Ćma",
    # others
    "Español: ¿Dónde está el niño? ¡Año nuevo! Señor Muñoz, pingüino",
    "Português: ação, coração, pão, avó, você; Čeština: příliš žluťoučký kůň úpěl ďábelské ódy",
    "Türkçe: İstanbul, ışık, IĞDIR, şişe, çiçek, DİYARBAKIR, ılık; Română: știință, țară",
    "Íslenska: Þórður, Ægir, Ðóra, þjóð; Dansk/Norsk: ÆØÅ æøå; Magyar: őrült ŰRHAJÓ",
]

GREEK = [
    "ΟΔΟΣ", "ΟΔΟΣ.", "ΟΔΟΣ,", "Σ", "Σ.", "ΣΣ", "ΑΣ!", "ΑΣ'", "ΌΣΟΣ", "ΣΟΦΟΣ", "Σίσυφος",
    "ΑΣΑ", "σ", "ς", "Σ\u0301", "ΑΣ\u0301", "ΑΣ\u0301Α", "ἈΣ", "Ὀδυσσεύς", "ΟΔΥΣΣΕΥΣ", "ὁδός",
    "Καλημέρα κόσμε", "ΚΑΛΗΜΈΡΑ ΚΌΣΜΕ", "ΐ ΰ ά έ ή ί ό ύ ώ", "ΆΈΉΊΌΎΏ", "Ϊ Ϋ ϊ ϋ",
    "Τὴ γλῶσσα μοῦ ἔδωσαν ἑλληνική", "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ", "ϐ ϑ ϕ ϖ ϰ ϱ ϲ ϵ Ϲ",
    "A\u03a3", "1Σ", "Σ1", "(ΟΔΟΣ)", "ΟΔΟΣ's", "ΟΔΟΣΟΔΟΣ", "ᾼ ᾈ ῼ ᾳ",
]

SCRIPTS = [
    # Cyrillic
    "Съешь же ещё этих мягких французских булок, да выпей чаю. ЁЛКА, Ёжик, ёж",
    "Україна: ґанок, їжак, єнот, Ї Є Ґ; Српски: Љубав, Њива, Џеп, Ђак, Ћерка; Ӂ ӝ",
    # Chinese (incl. a supplementary-plane ideograph and compatibility ideographs)
    "我能吞下玻璃而不伤身体。中华人民共和国成立于1949年。",
    "漢字とかな混じり文、繁體中文：臺灣、香港。𠀀𠀁𠮷野家 𪚥 𫝀 丽 \uf900\ufa0a",
    # Japanese kana
    "ひらがな カタカナ ｶﾀｶﾅ ﾊﾟﾝ がぎぐげご パピプペポ ゟ ヿ ー「こんにちは、世界！」",
    "いろはにほへと ちりぬるを わかよたれそ つねならむ。アイウエオ ァィゥェォ ヴ",
    # Korean
    "한국어 텍스트: 다람쥐 헌 쳇바퀴에 타고파. 가나다라마바사 ㄱㄴㄷ ᄀᄁ ᅡ ᆨ",
    "대한민국의 수도는 서울이다. 안녕하세요! 훈민정음",
    # Arabic (with harakat, tatweel, presentation forms)
    "العربية: مَرْحَبًا بِالْعَالَم، كيف حالك؟ ـــ ﻻ ﷺ ﷽",
    "النص العربي مع أرقام ٠١٢٣٤٥٦٧٨٩ و۰۱۲۳ والفارسی: سلام دنیا",
    # Hebrew
    "עִבְרִית: שָׁלוֹם עוֹלָם, בְּרֵאשִׁית",
    # Devanagari with combining marks (virama, nukta, candrabindu, matras)
    "हिन्दी: नमस्ते दुनिया, क़ ख़ ग़ ज़ ड़ ढ़ फ़, अँ अं अः, क्ष त्र ज्ञ, ॐ ०१२३४५",
    "संस्कृतम्: धर्मक्षेत्रे कुरुक्षेत्रे समवेता युयुत्सवः",
    # Thai (no spaces between words, tone marks)
    "ภาษาไทย: สวัสดีชาวโลก ก่อนหน้านี้ ๐๑๒๓ เป็นภาษาที่ไม่มีช่องว่าง",
    # others
    "ქართული ენა, Ქართული (Mtavruli), Հայերեն՝ ևս, ሰላም ዓለም, ᏣᎳᎩ ꮳꮃꭹ",
    "Deseret 𐐀𐐨 𐐷, Osage 𐒰𐓘, Adlam 𞤀𞤢, Gothic 𐌰𐌱, Old Italic 𐌀, Cuneiform 𒀀",
    "ᚠᚢᚦᚨᚱᚲ ᚷᚹ, ⠓⠑⠇⠇⠕, ꦲꦏ꧀ꦱꦫ, ꙮ, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐛𝐨𝐥𝐝 𝟙𝟚𝟛",
]

EMOJI = [
    "👨\u200d👩\u200d👧\u200d👦", "👩🏽\u200d💻", "🧑🏿\u200d🤝\u200d🧑🏻", "👍🏽", "👋🏻", "🤷🏼\u200d♀️",
    "🇫🇷", "🇺🇸", "🇯🇵🇰🇷", "🇺", "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "1️⃣", "#️⃣", "*️⃣", "9⃣", "❤️", "❤", "☺️", "✌🏾", "🏳️\u200d🌈", "😀😃😄", "🙂", "🤖", "🦄",
    "🔥🔥🔥", "©️", "™️", "🀄", "🃏", "⌚", "🕴️",
]

NUMBERS = [
    "3.14159265358979323846", "1,234,567.89", "0.000001", "1e-10", "6.022e23", "-42", "+7",
    "٠١٢٣٤٥٦٧٨٩", "۱۲۳", "१२३४", "１２３４５", "²³¹⁴⁵", "₁₂₃", "x²", "10³", "H₂O", "½ ¼ ¾ ⅓ ⅔ ⅛ ⅞",
    "1½", "Ⅰ Ⅱ Ⅲ Ⅳ Ⅻ ⅰ ⅱ ⅻ Ⅿ", "ⅩⅩⅠ", "① ② ⑳ ⑴ ⒈", "🄀 🄁", "𝟎𝟏𝟐", "〇一二三", "3rd", "1st", "21st",
    "$1,000", "€50", "50%", "2024-01-31", "12:30:45", "v1.2.3", "0x1F", "127.0.0.1", "1/2", "3/4",
]

SPACES = [" ", "  ", "\t", "\u00a0", "\u1680"] + [chr(c) for c in range(0x2000, 0x200B)] + \
    ["\u202f", "\u205f", "\u3000", "\u000b", "\u000c", "\u0085", "\u2028", "\u2029", "\u180e"]

CONTRACTIONS = [
    "it's", "I'm", "we'll", "they've", "don't", "can't", "won't", "she'd", "you're", "IT'S",
    "DON'T", "'S", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "’s", "it’s", "don’t", "''",
    "'", "rock 'n' roll", "'tis", "y'all", "o'clock", "'s'", "James's", "the '90s", "'''",
    "it''s", "it'S", "I'M", "x'sy", "'ss", "'lll", "'D", " 's", "  's",
]

PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + [
    "“", "”", "‘", "’", "«", "»", "‹", "›", "„", "‚", "—", "–", "‐", "‑", "…", "·", "•", "¡", "¿",
    "。", "、", "「", "」", "『", "』", "【", "】", "！", "？", "，", "：", "；", "（", "）", "‰", "§",
    "¶", "†", "‡", "※", "‽", "⁂", "©", "®", "™", "€", "£", "¥", "°", "±", "×", "÷", "→", "←", "∑",
    "∞", "≤", "≥", "≠", "√", "∀", "∂", "℃", "℉", "¦", "¨", "¯", "´", "¸", "˜", "ˆ", "՝", "؟", "،",
    "।", "॥", "჻", "〜", "～", "＿", "﹏", "︰", "﴾", "﴿", "⸘", "⸮", "\u2e3a", "\u00b7", "\u055a",
]

CONTROLS = ([chr(c) for c in range(0x00, 0x20) if c not in (0x0a, 0x0d)] + ["\u007f"] +
            [chr(c) for c in range(0x80, 0xa0)] +
            ["\u00ad", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202b",
             "\u202c", "\u202d", "\u202e", "\u2060", "\u2061", "\u2062", "\u2063", "\u2064",
             "\u2066", "\u2069", "\ufeff", "\ufffd", "\ufff9", "\ufffb", "\u061c", "\u180e",
             "\ue000", "\uf8ff", "\U000f0000", "\U0010fffd", "\U000e0001", "\U000e0041",
             "\U0001d173", "\u034f", "\ufe0f", "\ufe00", "\U000e0100"])

SPECIAL_CASING = [
    "İ", "İstanbul", "İİ", "ı", "I", "ß", "ẞ", "ŉ", "ǰ", "ΐ", "ΰ", "և", "ﬀ", "ﬁ", "ﬂ", "ﬃ", "ﬄ", "ﬅ",
    "ﬆ", "ﬓ", "ǅ", "ǈ", "ǋ", "ǲ", "Ǆ", "ǆ", "K", "Ω", "Å", "ẖ", "ẘ", "ẙ", "ẚ", "ᾀ", "ᾈ", "ῼ", "ῳ",
    "Ꭰ", "ꭰ", "Ა", "ა", "Ⓐ", "ⓐ", "𐐀", "𐐨", "𞤀", "𞤢", "𑢠", "𖹀", "ǈubljana", "ǅemal", "ΣΙΣΥΦΟΣ",
    "\u0049\u0307", "i\u0307", "Ⅻ", "ⅻ", "Ｆｕｌｌｗｉｄｔｈ", "ＡＢＣ", "ｱ", "ℌ", "ℍ", "ℎ", "ℏ", "µ", "Μ",
]

COMBINING = [chr(c) for c in range(0x300, 0x370)] + ["\u0483", "\u0591", "\u05bf", "\u0610",
    "\u064b", "\u0670", "\u093c", "\u094d", "\u0e31", "\u0e48", "\u1ab0", "\u1dc0", "\u20d0",
    "\u20dd", "\u20e3", "\ufe20", "\u3099", "\u309a", "\U0001d165", "\U0001e8d0", "\u0903",
    "\u093e", "\u0bcd"]

WORDS = ("the of and to in is that for it as with was on be by this are from or an at which "
         "tensor model gradient layer attention token vocabulary license software copyright "
         "warranty function return value shape batch dimension").split()


# Code points whose general category changed between this Python's Unicode
# (14.0) and the reference's (Node 20's ICU: Unicode 17.0); elsewhere every
# property the tokenizers use agrees (checked by comparing all categories and
# lowercase mappings). A tool on Unicode 14..17 tables may take either side.
UNSTABLE = {0x0295,   # LATIN LETTER PHARYNGEAL VOICED FRICATIVE: Ll -> Lo (cased?)
            0x1171E}  # AHOM CONSONANT SIGN MEDIAL RA: Mn -> Mc (accent stripped?)


def assigned_code_points():
    """Every code point that is assigned (not Cn) and not a surrogate (Cs).

    '\\n' and '\\r' are excluded as line structure, UNSTABLE as version noise;
    everything else stays."""
    out = []
    for cp in range(0x110000):
        if cp in (0x0A, 0x0D) or cp in UNSTABLE:
            continue
        if unicodedata.category(chr(cp)) not in ("Cn", "Cs"):
            out.append(cp)
    return out


class Synth:
    def __init__(self, rng, special_literals):
        self.r = rng
        self.special_literals = special_literals
        pts = assigned_code_points()
        self.assigned = pts
        pages = {}
        for cp in pts:
            pages.setdefault(cp >> 8, []).append(cp)
        self.pages = [pages[k] for k in sorted(pages)]

    def pick(self, xs, k):
        return [self.r.choice(xs) for _ in range(k)]

    def words(self, k):
        return " ".join(self.pick(WORDS, k))

    def case(self, s):
        return self.r.choice([s, s, s.upper(), s.lower(), s.title(), s.swapcase()])

    def accents(self):
        s = self.r.choice(ACCENTED)
        if self.r.random() < 0.5:  # a fragment, cased at random
            w = s.split(" ")
            i = self.r.randrange(len(w))
            s = " ".join(w[i:i + self.r.randint(1, 8)])
        return self.case(s)

    def greek(self):
        sep = lambda: self.r.choice([" ", " ", "", ", ", ". ", "\u00a0", "-", "\t"])
        return "".join(g + sep() for g in self.pick(GREEK, self.r.randint(1, 8))).rstrip(" ")

    def scripts(self):
        s = self.r.choice(SCRIPTS)
        if self.r.random() < 0.3:
            s += " " + self.words(self.r.randint(1, 5)) + self.r.choice(["", " ", ""]) + self.r.choice(SCRIPTS)[:20]
        return s

    def emoji(self):
        parts = self.pick(EMOJI, self.r.randint(1, 6))
        glue = self.r.choice(["", " ", " and ", "!", "word"])
        return self.words(self.r.randint(0, 3)) + " " + glue.join(parts) + self.r.choice(["", " ok", "!!", "word"])

    def numbers(self):
        r = self.r
        parts = self.pick(NUMBERS, r.randint(1, 5))
        if r.random() < 0.4:
            parts.append("".join(r.choice("0123456789") for _ in range(r.randint(10, 300))))
        if r.random() < 0.3:
            parts.append(r.choice(["abc", "x", "ID", "v"]) + str(r.randint(0, 10 ** 12)) + r.choice(["", "th", "px", "ms"]))
        r.shuffle(parts)
        return r.choice([" ", "  ", ", ", "", "-", "\t"]).join(parts)

    def spaces(self):
        r = self.r
        ws = lambda: "".join(self.pick(SPACES, r.randint(1, 6)))
        kind = r.randrange(4)
        if kind == 0:  # whitespace only
            return ws()
        w = [self.r.choice(WORDS + ACCENTED[0].split()[:5] + ["'s", "中", "1", "!"]) for _ in range(r.randint(1, 6))]
        body = "".join(x + ws() for x in w)
        return (ws() if kind >= 2 else "") + (body if kind != 1 else body.rstrip())

    def contractions(self):
        parts = self.pick(CONTRACTIONS, self.r.randint(1, 6)) + self.pick(WORDS, self.r.randint(0, 4))
        self.r.shuffle(parts)
        return self.r.choice([" ", "  ", "", ", "]).join(parts)

    def punct(self):
        r = self.r
        out = []
        for _ in range(r.randint(2, 14)):
            k = r.random()
            if k < 0.5:
                out.append("".join(self.pick(PUNCT, r.randint(1, 5))))
            elif k < 0.8:
                out.append(r.choice(WORDS))
            else:
                out.append(r.choice(["", " ", "  "]))
        return r.choice(["", " "]).join(out)

    def controls(self):
        r = self.r
        out = []
        for _ in range(r.randint(2, 12)):
            out.append(r.choice(CONTROLS) if r.random() < 0.5 else r.choice(WORDS + ["é", "中", "ΟΔΟΣ", " ", "'s"]))
        return "".join(out)

    def combining(self):
        r = self.r
        out = []
        for _ in range(r.randint(1, 8)):
            base = r.choice(["a", "e", "o", "I", "Σ", " ", "", "中", "1", "!", "'", "ß", "k", "한", "\u00a0", "👍"])
            out.append(base + "".join(self.pick(COMBINING, r.randint(0, 5))))
            out.append(r.choice(["", " ", "", "x"]))
        return "".join(out)

    def long_words(self):
        r = self.r
        n = r.choice([99, 100, 101, r.randint(50, 400)])
        kind = r.randrange(6)
        if kind == 0:
            w = "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
        elif kind == 1:
            w = "".join(r.choice(["é", "ß", "e\u0301", "ø", "ą"]) for _ in range(n))  # shrinks under NFD+strip
        elif kind == 2:
            w = "".join(r.choice(["😀", "𝐛", "𐐀", "🇫"]) for _ in range(n))  # 4-byte UTF-8, 2 UTF-16 units
        elif kind == 3:
            w = "".join(r.choice("0123456789") for _ in range(n))
        elif kind == 4:
            w = "".join(r.choice(WORDS) for _ in range(n // 4 + 1))[:n]
        else:
            w = "".join(r.choice(["A", "b", "İ", "\u00ad", "\u200b", "Σ"]) for _ in range(n))
        return self.r.choice(["", "x ", "The word "]) + w + self.r.choice(["", ".", " end", "'s"])

    def special_case(self):
        parts = self.pick(SPECIAL_CASING, self.r.randint(1, 6))
        return self.r.choice([" ", "", "-", ". "]).join(self.case(p) if self.r.random() < 0.3 else p for p in parts)

    def random_points(self):
        r = self.r
        n = r.randint(3, 40)
        if r.random() < 0.5:  # any assigned code point: mostly CJK, Hangul and private use
            cps = self.pick(self.assigned, n)
        else:  # a page first: every block gets its turn
            cps = [r.choice(r.choice(self.pages)) for _ in range(n)]
        s = "".join(chr(c) for c in cps)
        if r.random() < 0.5:  # break it into "words"
            s = "".join(ch + (" " if r.random() < 0.2 else "") for ch in s)
        return s

    def special_tokens(self):
        lits = ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "<|endoftext|>", "[cls]", "[CLS",
                "CLS]", "<|endoftext|", "<|endoftext|><|endoftext|>", "[SEP][SEP]", "[unused1]",
                "[MASK]s", "x[MASK]y", " <|endoftext|> ", "<|ENDOFTEXT|>", "[ CLS ]"]
        parts = self.pick(lits, self.r.randint(1, 4)) + self.pick(WORDS, self.r.randint(0, 4))
        self.r.shuffle(parts)
        return self.r.choice([" ", ""]).join(parts)

    def mixed(self):
        gens = [self.accents, self.greek, self.scripts, self.emoji, self.numbers, self.spaces,
                self.contractions, self.punct, self.combining, self.special_case, self.controls]
        return self.r.choice(["", " "]).join(g() for g in self.pick(gens, self.r.randint(2, 4)))

    def generators(self):
        """(weight, generator) for the synthetic share of the corpus."""
        g = [(6, self.accents), (5, self.greek), (6, self.scripts), (5, self.emoji),
             (5, self.numbers), (6, self.spaces), (5, self.contractions), (5, self.punct),
             (5, self.controls), (5, self.combining), (4, self.long_words), (4, self.special_case),
             (8, self.random_points), (10, self.mixed)]
        if self.special_literals:
            g.append((2, self.special_tokens))
        return g


def make_corpus(n, seed, special_literals=True):
    r = random.Random(seed)
    lines, paragraphs, code = real_text()
    syn = Synth(r, special_literals)
    out = []
    # Real text: about half of the corpus, when the files are there.
    n_real = n // 2 if lines else 0
    for _ in range(n_real):
        k = r.random()
        if k < 0.55 or not (paragraphs or code):
            out.append(r.choice(lines))
        elif k < 0.75 and paragraphs:
            out.append(r.choice(paragraphs))
        elif code:
            out.append(r.choice(code))
        else:
            out.append(r.choice(lines))
    # A few empty and whitespace-only lines, then the synthetic rest.
    out += ["", "", "", " ", "\t", "   ", "\u00a0", "\u3000", " \t \u2003 "]
    gens = syn.generators()
    weights = [w for w, _ in gens]
    while len(out) < n:
        (_, gen), = r.choices(gens, weights)
        out.append(clean(gen()))
    r.shuffle(out)
    # A plain first line: no reader can mistake a leading U+FEFF for a BOM.
    return ["megatron tokenizer agreement corpus"] + out[:n - 1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--lines", type=int, default=12000)
    p.add_argument("--seed", type=int, default=20240531)
    p.add_argument("--no-special-literals", action="store_true",
                   help="leave out lines with literal [CLS], <|endoftext|> etc.")
    a = p.parse_args(argv)
    if a.lines < 1:
        p.error("--lines must be >= 1")
    lines = make_corpus(a.lines, a.seed, not a.no_special_literals)
    assert all("\n" not in x and "\r" not in x for x in lines)
    data = "\n".join(lines).encode("utf-8") + b"\n"
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, a.out)
    print(f"make_corpus: {len(lines)} lines, {len(data)} bytes -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
