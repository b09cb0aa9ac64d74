#!/usr/bin/env python3
"""Generate tests/fixtures/pii_labelled.jsonl, the labelled PII fixture for cqr.

Each output line is one customer-support style message:

    {"text": "...", "pii": [{"type": "CARD", "start": 12, "end": 31}, ...]}

`start`/`end` are character offsets (Unicode scalar values, end exclusive),
which is what Python string indices are. Messages are rendered from templates
whose `{SLOT}` markers are filled by generators; a generator returns the text
and the label type, or None for lookalikes that must NOT be detected (order
numbers, bad checksums, amounts, plain dates ...). Card numbers get real Luhn
check digits and IBANs real ISO 13616 check digits, so every label is exact.

The output is deterministic: a fixed seed, no clock, no environment. Re-run
with `python3 scripts/gen_pii_fixture.py` from the repository root (or pass an output
path) and commit the result together with any change to this script.
"""

import json
import random
import re
import string
import sys
from pathlib import Path

SEED = 1613
REPEATS = 5  # renderings per template

rng = random.Random(SEED)


def digits(n):
    return "".join(rng.choice(string.digits) for _ in range(n))


def nz_digits(n):
    """n digits, the first one non-zero."""
    return rng.choice("123456789") + digits(n - 1)


# --------------------------------------------------------------------------
# Checksums


def luhn_check_digit(payload):
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # these get doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(number):
    return luhn_check_digit(number[:-1]) == number[-1]


def iban_mod97(s):
    rearranged = s[4:] + s[:4]
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return int(numeric) % 97


def make_iban(country, bban):
    check = 98 - iban_mod97(country + "00" + bban)
    return f"{country}{check:02d}{bban}"


# --------------------------------------------------------------------------
# Formatting helpers


def group(s, sizes, sep):
    out, i = [], 0
    for size in sizes:
        out.append(s[i : i + size])
        i += size
    if i < len(s):
        out.append(s[i:])
    return sep.join(out)


def group4(s, sep=" "):
    return sep.join(s[i : i + 4] for i in range(0, len(s), 4))


# --------------------------------------------------------------------------
# PII generators: each returns (text, TYPE)

CARD_BRANDS = [
    # (prefix chooser, length, grouping)
    (lambda: "4", 16, (4, 4, 4, 4)),
    (lambda: str(rng.randint(51, 55)), 16, (4, 4, 4, 4)),
    (lambda: str(rng.randint(2221, 2720)), 16, (4, 4, 4, 4)),
    (lambda: rng.choice(["34", "37"]), 15, (4, 6, 5)),
    (lambda: "6011", 16, (4, 4, 4, 4)),
    (lambda: str(rng.randint(3528, 3589)), 16, (4, 4, 4, 4)),
    (lambda: "36", 14, (4, 6, 4)),
    (lambda: "62", 19, (4, 4, 4, 4, 3)),
    (lambda: "4", 13, (4, 4, 5)),
]


def card_number():
    prefix, length, sizes = rng.choice(CARD_BRANDS)
    p = prefix()
    body = p + digits(length - len(p) - 1)
    return body + luhn_check_digit(body), sizes


def format_card(number, sizes):
    style = rng.choice(["plain", "space", "space", "dash"])
    if style == "plain":
        return number
    return group(number, sizes, " " if style == "space" else "-")


def gen_card():
    number, sizes = card_number()
    return format_card(number, sizes), "CARD"


def gen_bad_card():
    number, sizes = card_number()
    last = int(number[-1])
    bad = number[:-1] + str((last + rng.randint(1, 9)) % 10)
    assert not luhn_ok(bad)
    return format_card(bad, sizes), None


def alnum_upper(n):
    return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(n))


def letters(n):
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(n))


IBAN_BBANS = {
    "DE": lambda: digits(18),
    "GB": lambda: letters(4) + digits(14),
    "FR": lambda: digits(10) + alnum_upper(11) + digits(2),
    "ES": lambda: digits(20),
    "IT": lambda: letters(1) + digits(10) + alnum_upper(12),
    "NL": lambda: letters(4) + digits(10),
    "BE": lambda: digits(12),
    "CH": lambda: digits(5) + alnum_upper(12),
    "AT": lambda: digits(16),
    "IE": lambda: letters(4) + digits(14),
    "PL": lambda: digits(24),
    "PT": lambda: digits(21),
    "SE": lambda: digits(20),
}


def iban(country=None):
    country = country or rng.choice(sorted(IBAN_BBANS))
    return make_iban(country, IBAN_BBANS[country]())


def format_iban(value):
    return group4(value) if rng.random() < 0.6 else value


def gen_iban(country=None):
    return format_iban(iban(country)), "IBAN"


def gen_bad_iban():
    value = iban()
    # Any single-digit substitution in the BBAN breaks mod-97.
    positions = [i for i in range(4, len(value)) if value[i].isdigit()]
    i = rng.choice(positions)
    bad = value[:i] + str((int(value[i]) + rng.randint(1, 9)) % 10) + value[i + 1 :]
    assert iban_mod97(bad) != 1
    return format_iban(bad), None


FIRST = ["jane", "john", "maria", "li", "ahmed", "sofia", "lukas", "chloe", "raj", "zoe"]
LAST = ["doe", "smith", "garcia", "wang", "khan", "rossi", "muller", "martin", "patel", "kim"]
DOMAINS = [
    "gmail.com",
    "outlook.com",
    "mail.example.co.uk",
    "corp.example.org",
    "web.de",
    "orange.fr",
    "support.shop-example.io",
    "yahoo.co.jp",
]


def gen_email():
    f, l = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        [
            f"{f}.{l}",
            f"{f}{l}{rng.randint(1, 99)}",
            f"{f}+{rng.choice(['orders', 'bank', 'refund'])}",
            f"{f[0]}_{l}",
            f"{f}.{l}-{rng.randint(1970, 2005)}",
        ]
    )
    return f"{local}@{rng.choice(DOMAINS)}", "EMAIL"


def nanp():
    area = rng.choice("23456789") + digits(2)
    exchange = rng.choice("23456789") + digits(2)
    return area, exchange, digits(4)


def gen_phone_us():
    a, e, s = nanp()
    fmt = rng.choice(
        [
            f"({a}) {e}-{s}",
            f"{a}-{e}-{s}",
            f"{a}.{e}.{s}",
            f"+1 {a} {e} {s}",
            f"+1{a}{e}{s}",
            f"+1 ({a}) {e}-{s}",
            f"1-{a}-{e}-{s}",
        ]
    )
    return fmt, "PHONE"


def gen_phone_uk():
    fmt = rng.choice(
        [
            "020 7946 0{}".format(digits(3)),
            "07700 900{}".format(digits(3)),
            "0161 496 0{}".format(digits(3)),
            "+44 20 7946 0{}".format(digits(3)),
            "+44 7700 900{}".format(digits(3)),
            "+44 (0)20 7946 0{}".format(digits(3)),
        ]
    )
    return fmt, "PHONE"


def gen_phone_fr():
    pairs = " ".join(digits(2) for _ in range(4))
    fmt = rng.choice(
        [
            f"06 {pairs}",
            f"+33 6 {pairs}",
            "01.{}.{}.{}.{}".format(*(digits(2) for _ in range(4))),
            f"07 {pairs}",
        ]
    )
    return fmt, "PHONE"


def gen_phone_de():
    fmt = rng.choice(
        [
            "+49 (0)30 {}".format(digits(7)),
            "+49 30 {}".format(digits(8)),
            "030 {}".format(digits(7)),
            "0049 89 {}".format(digits(7)),
            "+49 151 {}".format(digits(8)),
        ]
    )
    return fmt, "PHONE"


def gen_phone_intl():
    fmt = rng.choice(
        [
            "+34 612 {} {} {}".format(digits(2), digits(2), digits(2)),
            "+39 06 {} {}".format(digits(4), digits(4)),
            "+91 98{} {}".format(digits(3), digits(5)),
            "+81 90-{}-{}".format(digits(4), digits(4)),
            "+86 138 {} {}".format(digits(4), digits(4)),
            "+7 495 {}-{}-{}".format(digits(3), digits(2), digits(2)),
            "+61 4{} {} {}".format(digits(2), digits(3), digits(3)),
            "+{}".format("1" + "".join(nanp())),
        ]
    )
    return fmt, "PHONE"


def gen_phone():
    return rng.choice([gen_phone_us, gen_phone_uk, gen_phone_fr, gen_phone_de, gen_phone_intl])()


def gen_phone_cn():
    return "1{}{}".format(rng.choice("3589"), digits(9)), "PHONE"


def gen_phone_jp():
    return "090-{}-{}".format(digits(4), digits(4)), "PHONE"


def gen_phone_bare_us():
    return "".join(nanp()), "PHONE"


def ssn_parts():
    area = rng.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


def gen_ssn():
    a, g, s = ssn_parts()
    return (f"{a}-{g}-{s}" if rng.random() < 0.75 else f"{a} {g} {s}"), "SSN"


def gen_ssn_bare():
    return "".join(ssn_parts()), "SSN"


def gen_bad_ssn():
    a, g, s = ssn_parts()
    which = rng.choice(["000", "666", "9xx", "g00", "s0000"])
    if which == "000":
        a = "000"
    elif which == "666":
        a = "666"
    elif which == "9xx":
        a = "9" + digits(2)
    elif which == "g00":
        g = "00"
    else:
        s = "0000"
    return f"{a}-{g}-{s}", None


def gen_ipv4():
    kind = rng.choice(["public", "10", "192", "172"])
    if kind == "10":
        octets = [10, rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254)]
    elif kind == "192":
        octets = [192, 168, rng.randint(0, 255), rng.randint(1, 254)]
    elif kind == "172":
        octets = [172, rng.randint(16, 31), rng.randint(0, 255), rng.randint(1, 254)]
    else:
        octets = [rng.randint(11, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254)]
    return ".".join(map(str, octets)), "IP"


def hex4():
    return format(rng.randint(1, 0xFFFF), "x")


def gen_ipv6():
    fmt = rng.choice(
        [
            "2001:db8:{}:{}::{}".format(hex4(), hex4(), hex4()),
            "fe80::{}:{}:{}:{}".format(hex4(), hex4(), hex4(), hex4()),
            "2001:0db8:85a3:0000:0000:8a2e:0370:{:04x}".format(rng.randint(0, 0xFFFF)),
            "::ffff:192.0.2.{}".format(rng.randint(1, 254)),
            "2a02:{}:{}::{}".format(hex4(), hex4(), rng.randint(1, 9)),
            "::1",
        ]
    )
    return fmt, "IP"


def token(n=24):
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def gen_url_secret():
    host = rng.choice(["app.example.com", "portal.bank-example.com", "shop.example.org", "api.example.io"])
    fmt = rng.choice(
        [
            f"https://{host}/reset-password?token={token()}",
            f"https://{host}/login#access_token={token(32)}&expires_in=3600",
            f"https://{host}/v2/orders?api_key={token(20)}&page=2",
            f"https://{rng.choice(FIRST)}:{token(10)}@{host}/export.csv",
            f"https://{host}/download?file=statement.pdf&sig={token(16)}&exp=1718000000",
            f"https://{host}/oauth/callback?code={token(12)}&state=xyz",
            f"http://{host}/account?session={token(18)}",
            f"ftp://admin:{token(8)}@files.example.net/backup/",
            f"https://{host}/api/export?apikey={token(16)}",
            f"https://{host}/s/{token(6)}?X-Amz-Signature={token(40).lower()}",
        ]
    )
    return fmt, "URL"


def gen_url_plain():
    host = rng.choice(["www.example.com", "help.example.com", "shop.example.org"])
    fmt = rng.choice(
        [
            f"https://{host}/orders/{rng.randint(10000, 99999)}",
            f"https://{host}/track?carrier=ups&id=1Z999AA1{digits(8)}",
            f"https://{host}/products/blue-shirt?utm_source=newsletter&utm_medium=email",
            f"https://{host}/help/reset-password",
            f"https://{host}/checkout?promo_code=SPRING24",
            f"https://{host}/search?q=refund+policy&page=2",
        ]
    )
    return fmt, None


MONTHS = ["January", "February", "March", "April", "May", "June", "July",
          "August", "September", "October", "November", "December"]


def birth_date():
    return rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)


def format_date(y, m, d):
    return rng.choice(
        [
            f"{d:02d}/{m:02d}/{y}",
            f"{y}-{m:02d}-{d:02d}",
            f"{d:02d}.{m:02d}.{y}",
            f"{d} {MONTHS[m - 1]} {y}",
            f"{MONTHS[m - 1]} {d}, {y}",
        ]
    )


def gen_dob():
    return format_date(*birth_date()), "DOB"


def gen_date():
    """A date that is not introduced as a birth date."""
    return format_date(rng.randint(2019, 2025), rng.randint(1, 12), rng.randint(1, 28)), None


# --------------------------------------------------------------------------
# Lookalikes: never PII


def plain(fn):
    def wrapped():
        return fn(), None

    return wrapped


def nanp_order_number():
    return "".join(nanp())


GENERATORS = {
    "CARD": gen_card,
    "BADCARD": gen_bad_card,
    "IBAN": gen_iban,
    "IBAN_DE": lambda: gen_iban("DE"),
    "IBAN_FR": lambda: gen_iban("FR"),
    "IBAN_GB": lambda: gen_iban("GB"),
    "IBAN_NL": lambda: gen_iban("NL"),
    "BADIBAN": gen_bad_iban,
    "EMAIL": gen_email,
    "PHONE": gen_phone,
    "PHONE_US": gen_phone_us,
    "PHONE_UK": gen_phone_uk,
    "PHONE_FR": gen_phone_fr,
    "PHONE_DE": gen_phone_de,
    "PHONE_INTL": gen_phone_intl,
    "PHONE_CN": gen_phone_cn,
    "PHONE_JP": gen_phone_jp,
    "PHONE_BARE": gen_phone_bare_us,
    "SSN": gen_ssn,
    "SSN_BARE": gen_ssn_bare,
    "BADSSN": gen_bad_ssn,
    "IPV4": gen_ipv4,
    "IPV6": gen_ipv6,
    "URL_SECRET": gen_url_secret,
    "URL_PLAIN": gen_url_plain,
    "DOB": gen_dob,
    "DATE": gen_date,
    # lookalikes
    "ORDERNUM": plain(lambda: str(rng.randint(10000, 9999999))),
    "ORDER10": plain(nanp_order_number),
    "ORD": plain(lambda: f"ORD-{rng.randint(2019, 2025)}-{digits(6)}"),
    "INVOICE": plain(lambda: f"INV-{rng.randint(2019, 2025)}-{digits(5)}"),
    "TRACKING": plain(
        lambda: rng.choice(
            [
                f"1Z{alnum_upper(6)}{digits(10)}",
                f"9400 {digits(4)} {digits(4)} {digits(4)} {digits(4)} {digits(2)}",
                f"JD0{digits(17)}",
                f"LX{digits(9)}DE",
            ]
        )
    ),
    "AMOUNT": plain(
        lambda: rng.choice(
            [
                f"${rng.randint(1, 9)},{digits(3)}.{digits(2)}",
                f"${rng.randint(10, 999)}.{digits(2)}",
                f"£{rng.randint(1, 9)},{digits(3)}.00",
                f"USD {rng.randint(1000, 99999)}.{digits(2)}",
            ]
        )
    ),
    "AMOUNT_EU": plain(
        lambda: rng.choice(
            [
                f"{rng.randint(1, 9)} {digits(3)},{digits(2)} EUR",
                f"{rng.randint(10, 999)},{digits(2)} €",
                f"€{rng.randint(1, 9)}.{digits(3)},{digits(2)}",
            ]
        )
    ),
    "TIME": plain(lambda: rng.choice([f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
                                      f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"])),
    "VERSION": plain(lambda: rng.choice([f"{rng.randint(1, 12)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
                                         f"v{rng.randint(1, 12)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}",
                                         f"{rng.randint(1, 12)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}-beta",
                                         f"2024.{rng.randint(1, 12)}.{rng.randint(1, 30)}"])),
    "PERCENT": plain(lambda: rng.choice([f"{rng.randint(5, 70)}%", f"{rng.randint(1, 9)}.{rng.randint(0, 9)} %"])),
    "POSTCODE": plain(lambda: rng.choice(["SW1A 1AA", f"{rng.randint(10000, 99999)}", f"{rng.randint(10000, 99999)}-{digits(4)}",
                                          "75008 Paris", "10115 Berlin", "EC1A 1BB"])),
    "REFCODE": plain(lambda: rng.choice([f"REF-{alnum_upper(4)}-{alnum_upper(4)}", f"CS{digits(8)}", f"#{rng.randint(10000, 99999)}",
                                         f"RF{digits(2)} {digits(4)} {digits(4)}"])),
    "ACCOUNTNUM": plain(lambda: nz_digits(rng.choice([8, 10, 12]))),
    "LAST4": plain(lambda: digits(4)),
    "EXP": plain(lambda: f"{rng.randint(1, 12):02d}/{rng.randint(25, 31)}"),
    "PIN": plain(lambda: digits(rng.choice([4, 6]))),
    "SORTCODE": plain(lambda: f"{digits(2)}-{digits(2)}-{digits(2)}"),
    "PORT": plain(lambda: str(rng.choice([443, 8080, 8443, 5432]))),
    "HANDLE": plain(lambda: f"{rng.choice(FIRST)}_{rng.choice(LAST)}"),
    "VVERSION": plain(lambda: f"v{rng.randint(1, 12)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}"),
    "NAME": plain(lambda: f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}"),
    "BIC": plain(lambda: rng.choice(["DEUTDEFF", "COBADEFFXXX", "BNPAFRPP", "NWBKGB2L"])),
    "QTY": plain(lambda: str(rng.randint(2, 9))),
}

TEMPLATES = [
    # --- banking -----------------------------------------------------------
    "Hi, I was charged twice on my card {CARD}. Can you refund the second payment of {AMOUNT}?",
    "My card ending {LAST4} was declined at checkout, the full number is {CARD} exp {EXP}.",
    "Please update my payout account to IBAN {IBAN} (account holder: {NAME}).",
    "I tried to add {BADIBAN} as a beneficiary but the app says it is invalid, is that my mistake?",
    "Card number {BADCARD} keeps failing, I think I mistyped a digit.",
    "Transfer of {AMOUNT_EU} to {IBAN} on {DATE} hasn't arrived. Ref {REFCODE}.",
    "Hallo, meine IBAN ist {IBAN_DE} und die Überweisung über {AMOUNT_EU} fehlt noch.",
    "Bonjour, mon IBAN : {IBAN_FR}. Merci de rembourser {AMOUNT_EU} 🙏",
    "For verification: DOB {DOB}, SSN {SSN}, phone {PHONE}.",
    "my social security number is {SSN_BARE} and my date of birth is {DOB}",
    "The SSN on file ({BADSSN}) is wrong, it should be {SSN}.",
    "Loan application {ORDERNUM}: born on {DOB}, reachable at {PHONE_US}.",
    "Sent {AMOUNT} by wire to {IBAN_GB}, BIC {BIC}, sort code {SORTCODE}.",
    "my old card {BADCARD} expired, the new one is {CARD}",
    "Refund {AMOUNT_EU} to card **** **** **** {LAST4} please, not to {IBAN_NL}.",
    "I've been a customer since {DATE} and my account number is {ACCOUNTNUM}.",
    "Ολα καλά, αλλά η κάρτα {CARD} απορρίφθηκε στις {TIME}.",
    # --- e-commerce --------------------------------------------------------
    "Order #{ORDERNUM} still not delivered, tracking {TRACKING}. Call me at {PHONE}.",
    "Where is my order {ORD}? It was supposed to arrive on {DATE}.",
    "order {ORDER10} has the wrong size, please exchange it",
    "I paid {AMOUNT} for invoice {INVOICE} but was billed again 😡",
    "Please ship to {POSTCODE}, my mobile is {PHONE_UK}.",
    "Return label for {ORD}: send it to {EMAIL} thanks!",
    "Got {PERCENT} off with the coupon but the total still shows {AMOUNT}.",
    "The parcel {TRACKING} was scanned at {TIME} on {DATE}, no update since.",
    "可以把发票发到 {EMAIL} 吗？我的电话是{PHONE_CN}。订单号 {ORDERNUM}",
    "Pedido {ORDERNUM}: mi teléfono es {PHONE_INTL} y mi correo {EMAIL}.",
    "注文番号 {ORDERNUM} の件で {EMAIL} までご連絡ください。電話 {PHONE_JP}",
    "Items: {QTY} x {AMOUNT}, tax {PERCENT}, delivered {DATE} to {POSTCODE}.",
    "Tracking number {ORDER10} shows delivered but nothing is here.",
    "Ticket {REFCODE}: customer phone {PHONE_BARE}, prefers texts.",
    "Our office line is {PHONE_US}, ask for Zoë at the front desk.",
    "New address: 12 Rue de Rivoli, {POSTCODE}. Téléphone : {PHONE_FR}.",
    "Neue Adresse: Hauptstraße 5, {POSTCODE}. Telefon: {PHONE_DE}.",
    "Invoice {INVOICE} dated {DATE} lists {QTY} items instead of 2.",
    # --- account access ----------------------------------------------------
    "I can't log in to {EMAIL}, the reset link {URL_SECRET} says expired.",
    "Login from {IPV4} wasn't me! My account email is {EMAIL}.",
    "Your API returns 401 for {URL_SECRET} — can you check the key?",
    "Blocked IPs {IPV4} and {IPV6} after too many attempts, please whitelist.",
    "The docs page {URL_PLAIN} doesn't explain how to reset my password.",
    "App version {VERSION} crashes on login since {DATE} at {TIME}.",
    "Two-factor code never arrives on {PHONE}, I'm stuck. Username @{HANDLE}.",
    "Our server at {IPV4}:{PORT} gets 403 from your webhook {URL_PLAIN}",
    "Hey 👋 my new email is {EMAIL} and new number {PHONE_FR}. Merci!",
    "Customer {NAME} ({EMAIL}) says her birthday is {DOB}.",
    "Meeting moved to {DATE} {TIME}; dial-in {PHONE_US} (PIN {PIN}).",
    "Support case {REFCODE}: user reported IP {IPV4}, build {VVERSION}.",
    "Здравствуйте! Мой email {EMAIL}, телефон {PHONE_INTL}, заказ {ORDERNUM}.",
    "I'm locked out, my IP is {IPV6} and it happened at {TIME}.",
    "Please delete my data: {EMAIL}, {PHONE}, D.O.B. {DOB}.",
    "Shared this link by mistake: {URL_SECRET} please revoke it ASAP",
    "Date of birth: {DOB}. Phone: {PHONE_UK}. Email: {EMAIL}.",
]

# Hand-written lines for lookalikes and edge cases that templates do not
# reach. Labels use the same {SLOT} machinery so offsets stay computed.
FIXED = [
    "Error 0x80070005 at 14:22:10, build 2024.11.3, please advise.",
    "Call center hours are 09:00-17:30 Mon-Fri, closed on 25.12.2024.",
    "I have version 10.2.3.4-beta installed, and v4.1.0.12 on the tablet.",
    # A valid dotted quad is an address even when someone calls it a version.
    ("Version 10.2.3.4 of the router firmware exposes the admin page.", [("IP", "10.2.3.4")]),
    "The chain 1.2.3.4.5 in the log is a version path, not an address.",
    "Price went from $1,234.56 to 1 234,56 EUR overnight (+12.5 %).",
    "Creditor reference RF18 5390 0754 7034 appears on the SEPA slip.",
    "My @jane_doe handle got suspended, email is not involved.",
    "ref 4155552671 is the case number from your colleague",
    "invoice 2125550199 was paid on 2024-01-15",
    "Tracking: 1Z999AA10123456784 and 9400 1118 9922 3100 0012 34",
    "Postcode 10115 Berlin, order ORD-2024-118822, total 19.99 €",
    "Times seen: 12:30:45, 08:15 and 23:59:59 — all UTC.",
    "IBAN DE89 3704 0044 0532 0130 01 was rejected by the bank",
    "MAC 00:1A:2B:3C:4D:5E keeps reconnecting, deadbeef in the log",
    "Just a plain link https://www.example.com/help?page=2 nothing secret",
    "SSNs like 000-12-3456, 666-45-6789, 912-34-5678, 123-00-4567 and 123-45-0000 are invalid",
    "Quantity 3, discount 20%, rating 4.5/5, ETA 2-3 days.",
    "Order {ORDERNUM} — call {PHONE_US} or email {EMAIL}",
    "Server {IPV4} on port {PORT}, backup at {IPV4}",
    "{CARD}",
    "{EMAIL}",
    "Card: {CARD} / CVV on the back / exp {EXP}",
    "d.o.b {DOB} — I was born on {DOB}? no, typo",
    "tel:{PHONE_INTL}",
    "🙂🙂 {PHONE_UK} 🙂🙂 {CARD} 🙂🙂",
    "ＩＤ：{EMAIL}（全角の括弧）",
    "Contact: josé.garcía is not ascii but {EMAIL} is",
    ("connection string postgres://svc_user:S3cr3t%40pw@db.example.internal:5432/prod leaked",
     [("URL", "postgres://svc_user:S3cr3t%40pw@db.example.internal:5432/prod")]),
    "Born in 1985, joined in 2019, order placed 2024-03-12.",
    "My birthday is tomorrow, order {ORD} should arrive before.",
    "SSN {SSN}",
    "social security {SSN_BARE}",
    "ip {IPV6}, gateway {IPV4}/24",
    # --- harder, hand-labelled ---------------------------------------------
    ("4155552671 is my number, text me anytime", [("PHONE", "4155552671")]),
    ("Call me between 2 and 5 pm at 555 0123, thanks", [("PHONE", "555 0123")]),
    ("Order no. 4155552671 — please cancel", []),
    ("Order 415-555-2671 is what the label says??", []),
    ("ISBN 978-3-16-148410-0 and ISBN 0-306-40615-2 are the books I ordered", []),
    ("card #4539 1488 0343 6467 got charged for an order I never made", [("CARD", "4539 1488 0343 6467")]),
    ("Please reach me (+44 20 7946 0958) or at jane.doe@mail.example.co.uk.",
     [("PHONE", "+44 20 7946 0958"), ("EMAIL", "jane.doe@mail.example.co.uk")]),
    ("Tel.: +49 30 12345678, Fax: +49 30 12345679", [("PHONE", "+49 30 12345678"), ("PHONE", "+49 30 12345679")]),
    ("Ring 0800 123 4567 ext. 12 for the claims team", [("PHONE", "0800 123 4567")]),
    ("電話090-1234-5678です。メールはtaro.yamada@example.jpです。",
     [("PHONE", "090-1234-5678"), ("EMAIL", "taro.yamada@example.jp")]),
    ("Mi IBAN es ES91 2100 0418 4502 0005 1332.", [("IBAN", "ES91 2100 0418 4502 0005 1332")]),
    ("IBAN:DE89370400440532013000 BIC:COBADEFFXXX", [("IBAN", "DE89370400440532013000")]),
    ("iban gb82 west 1234 5698 7654 32 (lower case, sorry)", [("IBAN", "gb82 west 1234 5698 7654 32")]),
    ("the dashboard at [2001:db8::1]:8443 refuses my login", [("IP", "2001:db8::1")]),
    ("Gateway is 10.0.0.1. DNS is 8.8.8.8.", [("IP", "10.0.0.1"), ("IP", "8.8.8.8")]),
    ("Activation link <https://app.example.com/activate?Token=Zx81Lq0Pa> expired",
     [("URL", "https://app.example.com/activate?Token=Zx81Lq0Pa")]),
    ("see (https://shop.example.org/orders/98909?utm_campaign=spring) for the order", []),
    ("my DOB is 3/7/85 and I'm not sure of the format", [("DOB", "3/7/85")]),
    ("birthday: 12th March 1985", [("DOB", "12th March 1985")]),
    ("my date of birth on the form is 1979-11-30 but passport says 1979-11-03",
     [("DOB", "1979-11-30")]),
    ("On March 12, 1985 I opened my first account with you.", []),
    ("My phone's IMEI is 356938035643809 and it is blocked", []),
    ("Social Security No. 078-05-1120 (the famous wallet one)", [("SSN", "078-05-1120")]),
    ("Account 12345678, sort code 20-00-00, amount 1,250.00 GBP", []),
    ("RMA 2024-118822-01 for order ORD-2024-118822", []),
    ("email JOHN.SMITH@EXAMPLE.COM or mailto:help@example.com", [("EMAIL", "JOHN.SMITH@EXAMPLE.COM"), ("EMAIL", "help@example.com")]),
    ("whatsapp: +1-415-555-2671 / signal: +1.415.555.2672", [("PHONE", "+1-415-555-2671"), ("PHONE", "+1.415.555.2672")]),
    ("Zahlung über 1.234,56 € am 03.04.2024 um 14:05 Uhr", []),
    ("ssn 123456789 and order 987654321", [("SSN", "123456789")]),
    ("The build 192.168.1 failed, and 1.2.3 too", []),
    ("Please call 020 7946 0958 or 07700 900123", [("PHONE", "020 7946 0958"), ("PHONE", "07700 900123")]),
    # --- messy, written after the detector existed; labelled by the spec,
    # not by what the detector happens to do ---------------------------------
    ("hi my card got declined 5425233430109903 exp 04/27 cvc 123 what's wrong??",
     [("CARD", "5425233430109903")]),
    ("Can u call me back on 07911 123456 asap", [("PHONE", "07911 123456")]),
    ("my no. is +44 7911 123456", [("PHONE", "+44 7911 123456")]),
    ("pls call 212 555 0143", [("PHONE", "212 555 0143")]),
    ("Reach me at 212.555.0143 or my wife at 212-555-0199",
     [("PHONE", "212.555.0143"), ("PHONE", "212-555-0199")]),
    ("Order #A12345 / customer ID 88812345", []),
    ("The confirmation code is 482913", []),
    ("My account 4000123412341234 was hacked", [("CARD", "4000123412341234")]),
    ("Ich bin am 14.07.1992 geboren und wohne in Köln.", [("DOB", "14.07.1992")]),
    ("DOB - 07/14/1992", [("DOB", "07/14/1992")]),
    ("birth date 1992/07/14", [("DOB", "1992/07/14")]),
    ("my ssn: 219-09-9999", [("SSN", "219-09-9999")]),
    ("SSN is 219 09 9999", [("SSN", "219 09 9999")]),
    ("Tax ID 12-3456789 belongs to the company", []),
    ("IP address: 203.0.113.195, user agent Mozilla/5.0", [("IP", "203.0.113.195")]),
    ("requests came from 2001:db8:3333:4444:5555:6666:7777:8888 all night",
     [("IP", "2001:db8:3333:4444:5555:6666:7777:8888")]),
    ("my login is jsmith@corp.example.com password hunter2", [("EMAIL", "jsmith@corp.example.com")]),
    ("it worked with https://user:hunter2@example.com yesterday", [("URL", "https://user:hunter2@example.com")]),
    ("https://example.com/login?redirect=/account&sid=8f14e45fceea167a5a36dedd4bea2543",
     [("URL", "https://example.com/login?redirect=/account&sid=8f14e45fceea167a5a36dedd4bea2543")]),
    ("Here's the link: https://drive.example.com/file/d/1a2b3c/view?usp=sharing", []),
    ("Sent 250.00 to GB33BUKB20201555555555 yesterday", [("IBAN", "GB33BUKB20201555555555")]),
    ("Beneficiary IBAN NL02ABNA0123456789 is wrong", [("IBAN", "NL02ABNA0123456789")]),
    ("My IBAN is CH93 0076 2011 6238 5295 7", [("IBAN", "CH93 0076 2011 6238 5295 7")]),
    ("Reference: 2024-06-01-00042", []),
    ("Phone +1 (646) 555-3890 ext 204", [("PHONE", "+1 (646) 555-3890")]),
    ("Cell: (646)555-3890", [("PHONE", "(646)555-3890")]),
    ("call +353 1 234 5678 during office hours", [("PHONE", "+353 1 234 5678")]),
    ("Order 1234567890123 still missing", []),
    ("Version 3.14.159.26 ships tomorrow", [("IP", "3.14.159.26")]),
    ("Latitude 48.8566, longitude 2.3522, temperature 36.6 °C", []),
    ("ZIP 10001-1234, card ending in 4242, exp 12/25", []),
    ("I was born 2/29/1988 in Ohio", [("DOB", "2/29/1988")]),
    ("Born: Jan 5, 1990", [("DOB", "Jan 5, 1990")]),
    ("my b-day is 5th of June 1990 :)", [("DOB", "5th of June 1990")]),
    ("Passport no. X1234567, DOB 01.01.1980", [("DOB", "01.01.1980")]),
    ("call me 📞 +33 6 12 34 56 78 😊", [("PHONE", "+33 6 12 34 56 78")]),
    ("客服电话 400-820-8820 一直占线", [("PHONE", "400-820-8820")]),
    ("Mã đơn hàng 123456789, số điện thoại 0912 345 678", [("PHONE", "0912 345 678")]),
    ("Номер карты 4276 3800 1234 5679, старая была 4276 3800 1234 5678",
     [("CARD", "4276 3800 1234 5679")]),
    ("telefone (11) 98765-4321, falar com Ana", [("PHONE", "(11) 98765-4321")]),
    ("my whatsapp is 5511987654321", [("PHONE", "5511987654321")]),
    ("The sort code is 40-47-84 and account 70872490", []),
    ("RIB : 30004 02837 00011017362 58", []),
    ("mon numéro: 06-12-34-56-78", [("PHONE", "06-12-34-56-78")]),
    ("Fax 0049-30-123456", [("PHONE", "0049-30-123456")]),
    ("I'm at 10.0.0.5/24 behind NAT 100.64.0.1", [("IP", "10.0.0.5"), ("IP", "100.64.0.1")]),
    ("server: db01.example.com:5432, replica db02", []),
]

SLOT = re.compile(r"\{([A-Z0-9_]+)\}")


def render(template):
    text, labels, pos = [], [], 0
    # With a capturing group, split alternates literal, slot name, literal...
    for i, piece in enumerate(SLOT.split(template)):
        if i % 2 == 1:
            value, kind = GENERATORS[piece]()
            if kind is not None:
                labels.append({"type": kind, "start": pos, "end": pos + len(value)})
            text.append(value)
            pos += len(value)
        else:
            text.append(piece)
            pos += len(piece)
    return "".join(text), labels


def label_literals(text, literals):
    """Labels for hand-written lines: each literal is located in order, so a
    repeated value is labelled at its next occurrence."""
    labels, cursor = [], 0
    for kind, literal in literals:
        start = text.index(literal, cursor)
        labels.append({"type": kind, "start": start, "end": start + len(literal)})
        cursor = start + len(literal)
    return labels


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pii_labelled.jsonl"
    rows, seen = [], set()
    for template in TEMPLATES:
        for _ in range(REPEATS):
            rows.append(render(template))
    for line in FIXED:
        if isinstance(line, tuple):
            text, literals = line
            rows.append((text, label_literals(text, literals)))
        else:
            rows.append(render(line))
    with out.open("w", encoding="utf-8") as f:
        for text, labels in rows:
            if text in seen:
                continue
            seen.add(text)
            for l in labels:
                assert 0 <= l["start"] < l["end"] <= len(text), (text, l)
            f.write(json.dumps({"text": text, "pii": labels}, ensure_ascii=False) + "\n")
    print(f"wrote {len(seen)} lines to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
