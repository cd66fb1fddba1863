"""The deterministic mix of help-desk mail that all Deskmail benchmarks share.

    generate(n, seed) -> n raw messages (bytes), identical for the same seed.

Mix (by count): 35 % plain text (0.5-6 KB), 25 % text plus HTML alternatives
(2-25 KB), 15 % other charsets (ISO-8859-1, Windows-1252, KOI8-R,
ISO-2022-JP, GB2312, Shift_JIS, with encoded subjects and names), 15 %
replies to earlier mails of the set (In-Reply-To, References, quoted text),
10 % with one or two attachments of 50 KB to 1 MB. About 77 KB a mail on
average; `python bench/mailgen.py --stats` prints the measured numbers.
Only `random.Random(seed)` is used, so the bytes never depend on the clock.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import format_datetime
from random import Random

SUPPORT = "support@example.test"
_FIRST = ["Anna", "Ben", "Carla", "David", "Eva", "Felix", "Greta", "Hugo", "Ines", "Jonas",
          "Karin", "Lukas", "Mia", "Noah", "Olivia", "Paul", "Rita", "Sam", "Tina", "Uwe"]  # fmt: skip
_LAST = ["Meyer", "Smith", "Keller", "Brown", "Novak", "Rossi", "Dubois", "Jensen", "Kowalski",
         "Garcia", "Schmidt", "Taylor", "Berg", "Lindqvist", "Moreau", "Weber"]  # fmt: skip
_DOMAINS = ["example.com", "example.org", "example.net", "customer.example", "shop.example.com",
            "mail.example.org"]  # fmt: skip
_WORDS = (
    "the order invoice account login password printer network access update problem request "
    "please help thanks today yesterday still again error message screen page server backup "
    "delivery parcel refund payment card number customer support ticket issue since version "
    "after before when cannot does not work works fine restart install configure email mailbox "
    "we you our your they it this that with from about could would should have has had been "
    "is are was were and or but if then also only just already soon monday friday week month"
).split()

# Text in other charsets: (charset, transfer encoding, sender name, subject, body sentences).
_FOREIGN = [
    ("iso-8859-1", "quoted-printable", "Jürgen Größmann", "Bestellung über Größe Ä",
     "Guten Tag, ich habe eine Frage zu meiner Bestellung. Die Lieferung ist nicht angekommen. "
     "Können Sie bitte prüfen, wo das Paket ist? Mit freundlichen Grüßen aus München."),
    ("windows-1252", "8bit", "Zoë O’Brien", "Invoice “2024-117” – 25 € missing",
     "Hello – the “invoice” shows 25 € too much… I don’t understand why. Could you check it? "
     "Thanks – Zoë."),
    ("koi8-r", "base64", "Сергей Иванов", "Не работает вход в личный кабинет",
     "Здравствуйте, у меня не работает вход в личный кабинет. Пароль сброшен, но ошибка "
     "остаётся. Пожалуйста, помогите. Спасибо!"),
    ("iso-2022-jp", "7bit", "山田 太郎", "注文した商品が届きません",
     "お世話になっております。先週注文した商品がまだ届いていません。"
     "お手数ですが、配送状況をご確認いただけますでしょうか。よろしくお願いいたします。"),
    ("gb2312", "base64", "王小明", "账户无法登录，请帮忙",
     "您好，我的账户从昨天开始无法登录，系统提示密码错误。我已经重置了密码，但问题仍然存在。"
     "请帮忙查看一下，谢谢！"),
    ("shift_jis", "base64", "佐藤 花子", "請求書の金額について",
     "いつもお世話になっております。今月の請求書の金額が見積もりと異なっているようです。"
     "ご確認のほど、よろしくお願いいたします。"),
]  # fmt: skip
_ATTACHMENT_TYPES = [("application/pdf", "pdf"), ("image/jpeg", "jpg"), ("image/png", "png"),
                     ("application/zip", "zip"), ("application/vnd.openxmlformats-officedocument."
                      "wordprocessingml.document", "docx")]  # fmt: skip
_EPOCH = dt.datetime(2024, 1, 8, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))


@dataclass
class _Sent:
    message_id: str
    subject: str
    sender: str
    date: dt.datetime
    text: str


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = Random(seed)
        self.seed = seed
        self.sent: list[_Sent] = []
        self.clock = _EPOCH

    def message(self, index: int) -> tuple[str, bytes]:
        rng = self.rng
        self.clock += dt.timedelta(seconds=rng.randint(5, 900))
        message_id = f"{self.seed}.{index}.{rng.getrandbits(48):012x}@mail.example.com"
        roll = rng.random()
        if roll < 0.35:
            kind = "plain"
        elif roll < 0.60:
            kind = "alternative"
        elif roll < 0.75:
            kind = "charset"
        elif roll < 0.90 and self.sent:
            kind = "reply"
        else:
            kind = "attachment" if roll >= 0.90 else "plain"
        return message_id, getattr(self, f"_{kind}")(message_id)

    # -- pieces -----------------------------------------------------------

    def _person(self) -> tuple[str, str]:
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        domain = self.rng.choice(_DOMAINS)
        return f"{first} {last}", f"{first}.{last}{self.rng.randint(1, 400)}@{domain}".lower()

    def _text(self, size: int) -> str:
        rng = self.rng
        paragraphs = []
        length = 0
        while length < size:
            words = rng.choices(_WORDS, k=rng.randint(20, 90))
            words[0] = words[0].capitalize()
            lines, line = [], ""
            for word in words:
                if len(line) + len(word) > 72:
                    lines.append(line)
                    line = word
                else:
                    line = f"{line} {word}" if line else word
            lines.append(line + ".")
            paragraph = "\r\n".join(lines)
            paragraphs.append(paragraph)
            length += len(paragraph) + 4
        return "Hello,\r\n\r\n" + "\r\n\r\n".join(paragraphs) + "\r\n\r\nBest regards\r\n"

    def _subject(self) -> str:
        return " ".join(self.rng.choices(_WORDS, k=self.rng.randint(3, 8))).capitalize()

    def _headers(self, message_id: str, name: str, address: str, subject: str, extra: str = "") -> str:
        return (
            f"Received: from mx.example.net (mx.example.net [192.0.2.{self.rng.randint(1, 254)}])\r\n"
            f"\tby mail.example.test with ESMTPS; {format_datetime(self.clock)}\r\n"
            f"From: {name} <{address}>\r\n"
            f"To: Support <{SUPPORT}>\r\n"
            f"Subject: {subject}\r\n"
            f"Date: {format_datetime(self.clock)}\r\n"
            f"Message-ID: <{message_id}>\r\n"
            f"{extra}MIME-Version: 1.0\r\n"
        )

    def _remember(self, message_id: str, subject: str, sender: str, text: str) -> None:
        self.sent.append(_Sent(message_id, subject, sender, self.clock, text))

    # -- kinds ------------------------------------------------------------

    def _plain(self, message_id: str) -> bytes:
        name, address = self._person()
        subject = self._subject()
        text = self._text(self.rng.randint(400, 5800))
        self._remember(message_id, subject, name, text)
        head = self._headers(message_id, name, address, subject)
        head += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        return (head + text).encode("ascii")

    def _alternative(self, message_id: str) -> bytes:
        name, address = self._person()
        subject = self._subject()
        text = self._text(self.rng.randint(700, 9000))
        paragraphs = text.split("\r\n\r\n")
        html = (
            '<html><head><meta charset="utf-8"><style>p{margin:0}</style></head><body>'
            + "".join(f'<p style="font-family:Arial">{p.replace(chr(13) + chr(10), " ")}</p>\r\n' for p in paragraphs)
            + '<p><a href="https://www.example.com/account">My account</a></p></body></html>\r\n'
        )
        self._remember(message_id, subject, name, text)
        boundary = f"=_alt_{self.rng.getrandbits(64):016x}"
        head = self._headers(message_id, name, address, subject)
        return (
            f'{head}Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            f"{_qp(text)}\r\n--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{_qp(html)}\r\n--{boundary}--\r\n"
        ).encode("ascii")

    def _charset(self, message_id: str) -> bytes:
        charset, cte, name, subject, sentence = self.rng.choice(_FOREIGN)
        _, address = self._person()
        body = "\r\n".join([sentence] * self.rng.randint(2, 12)) + "\r\n"
        self._remember(message_id, subject, name, body)
        encoded_name = _encoded_word(name, charset, "B")
        encoded_subject = _encoded_word(subject, charset, self.rng.choice("BQ"))
        head = self._headers(message_id, encoded_name, address, encoded_subject).encode("ascii")
        data = body.encode(_CODECS.get(charset, charset))
        if cte == "base64":
            data = base64.encodebytes(data).replace(b"\n", b"\r\n")
        elif cte == "quoted-printable":
            data = binascii.b2a_qp(data).replace(b"\n", b"\r\n")
        content = f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
        return head + content.encode("ascii") + data

    def _reply(self, message_id: str) -> bytes:
        original = self.rng.choice(self.sent[-200:])
        name, address = self._person()
        subject = original.subject if original.subject.startswith("Re:") else f"Re: {original.subject}"
        quoted = "\r\n".join("> " + line for line in original.text.split("\r\n")[:60])
        new = self._text(self.rng.randint(200, 1500))
        if self.rng.random() < 0.5:
            history = f"On {format_datetime(original.date)}, {original.sender} wrote:\r\n{quoted}\r\n"
        else:
            history = (
                f"-----Original Message-----\r\nFrom: {original.sender}\r\n"
                f"Sent: {format_datetime(original.date)}\r\nTo: {SUPPORT}\r\n"
                f"Subject: {original.subject}\r\n\r\n{original.text}"
            )
        text = f"{new}\r\n{history}"
        self._remember(message_id, subject, name, new)
        extra = f"In-Reply-To: <{original.message_id}>\r\nReferences: <{original.message_id}>\r\n"
        head = self._headers(message_id, name, address, subject, extra)
        head += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        return (head + text).encode("utf-8")

    def _attachment(self, message_id: str) -> bytes:
        rng = self.rng
        name, address = self._person()
        subject = self._subject()
        text = self._text(rng.randint(300, 2000))
        self._remember(message_id, subject, name, text)
        boundary = f"=_mix_{rng.getrandbits(64):016x}"
        head = self._headers(message_id, name, address, subject)
        out = [
            f'{head}Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n".encode("ascii")
        ]
        for number in range(rng.choice((1, 1, 2))):
            # Skewed towards the small end, as real attachments are.
            size = 50_000 + int(950_000 * rng.random() ** 1.8)
            kind, ext = rng.choice(_ATTACHMENT_TYPES)
            data = base64.encodebytes(rng.randbytes(size)).replace(b"\n", b"\r\n")
            out.append(
                f"--{boundary}\r\nContent-Type: {kind}; name=\"file{number + 1}.{ext}\"\r\n"
                f'Content-Disposition: attachment; filename="file{number + 1}.{ext}"\r\n'
                f"Content-Transfer-Encoding: base64\r\n\r\n".encode("ascii")
            )
            out.append(data)
        out.append(f"--{boundary}--\r\n".encode("ascii"))
        return b"".join(out)


_CODECS = {"gb2312": "gb2312", "shift_jis": "shift_jis", "iso-2022-jp": "iso2022_jp"}


def _qp(text: str) -> str:
    data = binascii.b2a_qp(text.encode("utf-8"))
    return data.decode("ascii").replace("\r\n", "\n").replace("\n", "\r\n")


def _encoded_word(text: str, charset: str, encoding: str) -> str:
    data = text.encode(_CODECS.get(charset, charset))
    if encoding == "B":
        return f"=?{charset}?B?{base64.b64encode(data).decode('ascii')}?="
    payload = "".join(_q_char(byte) for byte in data)
    return f"=?{charset}?Q?{payload}?="


def _q_char(byte: int) -> str:
    char = chr(byte)
    if char == " ":
        return "_"
    if byte < 128 and (char.isalnum() or char in "!*+-/"):
        return char
    return f"={byte:02X}"


def generate_with_ids(n: int, seed: int = 1) -> Iterator[tuple[str, bytes]]:
    """(Message-ID without brackets, raw bytes) for n messages of the mix."""
    generator = _Generator(seed)
    for index in range(n):
        yield generator.message(index)


def generate(n: int, seed: int = 1) -> Iterator[bytes]:
    """n raw messages of the shared benchmark mix; the same bytes for the same seed."""
    for _, raw in generate_with_ids(n, seed):
        yield raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stats", action="store_true", help="print size statistics of the mix")
    args = parser.parse_args()
    sizes = [len(raw) for raw in generate(args.n, args.seed)]
    if args.stats:
        sizes.sort()
        print(f"messages: {len(sizes)}  seed: {args.seed}")
        print(f"average: {sum(sizes) / len(sizes) / 1024:.1f} KB  total: {sum(sizes) / 1e6:.1f} MB")
        print(f"median: {sizes[len(sizes) // 2] / 1024:.1f} KB  max: {sizes[-1] / 1024:.1f} KB")


if __name__ == "__main__":
    main()
