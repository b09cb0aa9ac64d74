#!/usr/bin/env python3
"""Generate the synthetic customer-support ticket data set used by cqr.

Writes two UTF-8 CSV files (header: id,text,intent,customer_id,customer_tier,
channel,created_at):

  * tickets.csv       -- training set, 90 rows per intent (ids T00001...), then
                         60 out-of-scope queries labelled `oos` (ids T01441...)
  * tickets_test.csv  -- held-out test set, 30 rows per intent (ids E00001...)

and a customer history for `cqr respond --history` (header: id,customer_id,
created_at,text,intent,status,name,customer_tier,reply):

  * history.csv       -- past contacts (ids H00001..., sorted by time) of the
                         customers in the two ticket files, with their tier there
                         and a name (empty for ~10% of them): about as many per
                         customer as they have tickets, mostly Jun-Aug 2026, on
                         the 16 in-scope intents, in the tickets' style; status
                         resolved / closed / open / pending / escalated (contacts
                         older than 30 days almost all settled), and for resolved
                         and closed ones the agent's reply (per-intent templates
                         that reuse the order id / amount the text mentions, no
                         personal data). Planted on purpose: ~12% of the test
                         tickets have an open contact by the same customer on the
                         same intent 2-60 hours before (a repeat contact), ~5% an
                         open or pending one on another intent 1-10 days before.

Texts are built from many hand-written sentence skeletons per intent (16
intents) with slot fillers, varied register (terse, polite e-mail, angry,
chat-style), openers/closers, deterministic typo injection (~25% of rows), a
few rows with PII (e-mail / phone / card fragment, ~5%) and urgency/emotion
cues (~10%). Confusable intents overlap on purpose (ambiguous skeletons,
secondary mentions, ~2.5% label noise) so accuracy is high but not perfect.
No text appears twice, within or across files. Output is fully
deterministic for a given --seed and is committed to data/; re-run with
`python3 scripts/gen_data.py` from the repository root to regenerate it.
The history draws from its own seeds, so it leaves the ticket files as they are.

Other outputs (each written alone, to PATH):

  --shifted-batch PATH             the drift-check demo's shifted batch
  --history-rows N --history-out PATH
                                   a benchmark history of exactly N rows in
                                   history.csv's columns: ~N/8 synthetic
                                   customers (C00001...), Sep 2025 - Sep 2026;
                                   texts may repeat (100,000 rows in seconds)

Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import random
import re
import sys

SEED = 20260914
TRAIN_PER_INTENT = 90
TEST_PER_INTENT = 30
N_CUSTOMERS = 400
START = dt.datetime(2026, 9, 1, 0, 0, 0, tzinfo=dt.timezone.utc)
END = dt.datetime(2026, 11, 1, 0, 0, 0, tzinfo=dt.timezone.utc)  # exclusive

FIELDS = ["id", "text", "intent", "customer_id", "customer_tier", "channel", "created_at"]

# ---------------------------------------------------------------------------
# Sentence skeletons per intent. Slots in {braces} are filled by fill_slots().
# Some skeletons deliberately overlap with neighbouring intents (refund vs
# double charge vs damaged item, login vs password reset vs locked account,
# lost card vs compromised card, ...) so the task is not trivially separable.
# ---------------------------------------------------------------------------
TEMPLATES: dict[str, list[str]] = {
    "billing_question": [
        'I got charged {amount} after cancelling, is that the final bill or a mistake?',
        'Is the {amount} pending on my card a hold or an actual charge for order {order}?',
        'My payment for the {plan} failed, will I be charged a late fee?',
        "Can you explain the {amount} charge on my last invoice?",
        "I don't understand my bill this month, why is it {amount} instead of {amount2}?",
        'What is the fee labelled "{fee}" on my statement?',
        "where can i download my invoice for {month}",
        "I need a VAT invoice for order {order} for my expense report.",
        "Why was I charged {amount} on {date}? I don't understand what the line item is for.",
        "When does my {plan} renew and how much will it cost?",
        "Is tax included in the {amount} price or added at checkout?",
        "my bill went up to {amount}, what changed?",
        "Could you send me a breakdown of the charges on my account for {month}?",
        "How is the prorated amount of {amount} calculated now that I upgraded to the {plan}?",
        "question about billing - what's the {fee}?",
        "Do you charge extra for paying by {paymethod}?",
        "The invoice for order {order} shows the wrong company name, can it be reissued?",
        "When exactly will I be billed for my {plan}, start or end of the month?",
        "Why am I paying for the {plan} when I thought it was still a free trial?",
        "Invoice {invoice} total doesn't match what I was quoted ({amount}).",
        "What currency will I be billed in? I'm seeing {amount} but expected {amount2}.",
        "Is the {amount} on my statement the annual fee or a one-off charge?",
    ],
    "double_charge": [
        'I see {amount} twice on my card, is one of them just a pending authorisation?',
        'Refund the second payment please, I was only supposed to pay {amount} once.',
        "Two charges for my {plan} this month, I'd like my money back for one.",
        "I was charged twice for order {order}, {amount} each time.",
        "My card shows two identical payments of {amount} on {date}.",
        "double charged!! {amount} x2 for the same order",
        "You billed my {plan} twice this month. Please refund the duplicate charge.",
        "There are 2 transactions of {amount} for one purchase of a {product}.",
        "I only placed one order but got charged {amount} two times.",
        "The payment went through twice when the checkout page froze.",
        "charged 2x for {order}",
        "Why do I see the same {amount} charge twice on my statement?",
        "My bank statement shows a duplicate payment to you on {date}.",
        "I clicked pay once and the app took {amount} from my account three times.",
        "Looks like my subscription renewal was taken twice: {amount} on {date} and again the next day.",
        "Duplicate charge on order {order}, please reverse one of them.",
        "I've been billed twice for the same {product}, can you check?",
        "The pending charge of {amount} never dropped off and now there's a second one for the same order.",
        "got hit with two charges for one order, what's going on",
        "Both my old card and my new card were charged {amount} for order {order}.",
        "You took the money for my {product} twice, I want the extra {amount} back.",
    ],
    "refund_request": [
        "The {product} arrived damaged and I'd rather have my money back than a replacement.",
        'Wrong item sent so I returned it, where is my refund for order {order}?',
        'I cancelled my {plan} on {date}, can I get the {amount} back for this month?',
        "I would like a refund for my {product}, order {order}.",
        "How do I get my money back for order {order}?",
        "refund please, the {product} is not what I expected",
        "I returned the {product} {days} days ago and still haven't received my refund of {amount}.",
        "Can I get a refund for the unused part of my {plan}?",
        "I want to return the {product} and get a full refund.",
        "When will my refund of {amount} be processed?",
        "The {product} doesn't fit, I'd like to send it back for a refund.",
        "Please refund {amount} to my original payment method.",
        "You promised a refund on {date} but nothing has shown up on my card.",
        "I changed my mind about the {product}, is it too late to get a refund?",
        "What's your refund policy for a {product} that has been opened?",
        "Order {order} was cancelled but I was still charged {amount}, I need that refunded.",
        "I'd like my money back, the {product} stopped working after {days} days.",
        "refund status for {order}?",
        "Can the refund go to store credit instead of my card?",
        "I'm requesting a refund of the {amount} express shipping fee since it came late.",
        "Return label printed and parcel dropped off on {date}, when do I get the {amount} back?",
    ],
    "cancel_subscription": [
        'Your service has been terrible lately so please just cancel my {plan}.',
        "How do I stop the monthly charge of {amount}? I don't want the {plan} anymore.",
        "I can't log in to cancel my subscription, can you do it from your side?",
        "Please cancel my {plan} effective immediately.",
        "How do I cancel my subscription?",
        "cancel my membership",
        "I want to stop my {plan} from renewing next month.",
        "I no longer need the service, please close my subscription and stop charging me.",
        "I tried to cancel in the app but there's no button, can you cancel the {plan} for me?",
        "Can I cancel the {plan} before the trial ends on {date} so I'm not billed?",
        "Please turn off auto-renew on my {plan}.",
        "I'm moving abroad and need to end my subscription.",
        "unsubscribe me from the {plan}, it's too expensive",
        "I was going to downgrade but honestly just cancel the whole {plan}.",
        "Cancel my subscription and confirm by email please.",
        "How much notice do I need to give to cancel the {plan}?",
        "I cancelled on {date} but was charged {amount} again, please make sure it's actually cancelled.",
        "Is there a cancellation fee if I end my {plan} early?",
        "stop my subscription now",
        "I want to terminate my contract, I'm not using the {plan} anymore.",
        "Don't renew my {plan} on {date}, I'm done with it.",
    ],
    "delivery_delayed": [
        'Where is my {product}? It should have been here {days} days ago.',
        'Order {order} is over a week late, I want a refund of the shipping at least.',
        'The parcel was meant to come on {date}, can you tell me where it is?',
        "My order {order} was supposed to arrive on {date} and it's still not here.",
        "It's been {days} days and my {product} hasn't arrived.",
        "the tracking hasn't updated in {days} days",
        "Delivery is late, the estimated date was {date}.",
        "Why is my package taking so long? Order {order}.",
        "The courier keeps pushing back the delivery date for my {product}.",
        "I paid {amount} for express shipping and it's now {days} days late.",
        'Tracking says "in transit" since {date}, is it lost?',
        "still no parcel, it was due {date}",
        "My {product} was meant to arrive before the weekend, now it says next week.",
        "Order {order} has been stuck at the depot in {city} for {days} days.",
        "The delivery window passed and nobody came with my {product}.",
        "Your site said 2-3 day delivery but it's been {days} days.",
        "my package is late again",
        "Has my order even shipped? It was due {date} and I have nothing.",
        "I needed the {product} for a birthday on {date} and it still hasn't come.",
        "Tracking has shown 'out for delivery' since {date} but nothing arrived.",
        "When is my delayed order {order} actually going to turn up?",
    ],
    "wrong_item": [
        "The {product} in the box isn't mine and it's scratched too.",
        "Got a {product2} instead of my {product}, I'd like a refund or the right one.",
        'Is my real order still coming? What arrived was a {product2}, not my {product}.',
        "I received the wrong item, I ordered a {product} but got a {product2}.",
        "Order {order} contained someone else's items.",
        "wrong size sent for my {product}",
        "You sent me a {color} {product} instead of a {color2} one.",
        "The package had a {product2} in it, not the {product} I paid for.",
        "The item I received doesn't match my order {order}.",
        "I got the wrong model of {product}.",
        "Only part of my order arrived and one item is a completely different product.",
        "This is not what I ordered, I wanted the {product}!",
        "wrong thing in the box, ordered {product}",
        "How do I exchange an incorrect item? I received a {product2} instead of a {product}.",
        "The label says {product} but inside there's a {product2}.",
        "You shipped the wrong quantity, I ordered {qty} and got 1.",
        "I want the correct item sent, not a refund, order {order} was wrong.",
        "My order was mixed up with another customer's, the {product} isn't mine.",
        "Received an incorrect item for order {order}, please advise on the return.",
        "The {product} you sent is for a different model than what I selected.",
        "Asked for the {color} {product}, got {color2}. Can you swap it?",
    ],
    "damaged_item": [
        'My {product} was delivered {days} days late and broken on top of that.',
        "The {product} I received looks nothing like the photos, it's bent and chipped.",
        'Can I return a faulty {product} for a refund? It cracked on the first use.',
        "My {product} arrived broken.",
        "The box was crushed and the {product} inside is cracked.",
        "item damaged on arrival, order {order}",
        "The {product} doesn't turn on, it looks like it was damaged in shipping.",
        "The {product} was scratched straight out of the box.",
        "Received my order today but the {product} is smashed, I want a replacement or a refund.",
        "Parts are missing and the casing of the {product} is dented.",
        "The {product} leaked all over the package.",
        "damaged parcel, {product} unusable",
        "The {product} shattered in transit, photos attached.",
        "My {product} is defective, it stopped working after {days} days.",
        "There's a big tear in the {product} I just received.",
        "The {product} came with water damage.",
        "Order {order}: the item is broken, how do I get it replaced?",
        "The seal on the {product} was broken and it looks used.",
        "it came broken",
        "The {product} arrived with a bent frame and won't sit level.",
        "Half the {product} was in pieces when I opened the box on {date}.",
    ],
    "order_status": [
        "It's been {days} days since I ordered, has it shipped?",
        'Can I still change anything on order {order} or has it already been dispatched?',
        'Did you receive my return for order {order}?',
        "where is my order {order}",
        "Can you tell me the status of order {order}?",
        "Has my {product} shipped yet?",
        "When will my order arrive?",
        "I placed an order on {date}, can I get a tracking number?",
        "order status?",
        "Is order {order} confirmed? I didn't get a confirmation email.",
        "How can I track my package?",
        "What's the estimated delivery date for my {product}?",
        "The tracking link for {order} doesn't work, where is the parcel now?",
        "Just checking whether my order has been dispatched.",
        "Any update on order {order}?",
        "Did my payment for order {order} go through and is it being processed?",
        "Can I see when my {product} will be delivered?",
        "Which courier is delivering my order {order}?",
        "Has my order been packed yet? I ordered on {date}.",
        "status of {order} pls",
        "I ordered a {product} on {date}, what stage is it at?",
    ],
    "change_address": [
        'My order {order} is going to my old address, can you stop it?',
        'The courier says the address on order {order} is wrong, how do I correct it?',
        'Can I update the billing address on my card payments to {street}?',
        "I need to change the delivery address for order {order}.",
        "Can I update my shipping address? I moved to {city}.",
        "wrong address on my order, can you fix it",
        "Please send my {product} to {street} instead.",
        "I made a typo in my address, the postcode should be {postcode}.",
        "How do I change my default address in my account?",
        "Can the parcel be redirected to my work address?",
        "I'm moving on {date}, please update my billing and shipping address.",
        "update address to {street}, {city}",
        "Is it too late to change where order {order} is going?",
        "I entered my old address by mistake, the order hasn't shipped yet.",
        "Could you deliver to my neighbour at {street} instead?",
        "change shipping address pls",
        "My apartment number is missing from the address on order {order}, it's flat {flat}.",
        "I want my order delivered to a pickup point in {city} instead of home.",
        "New address: {street}, {city} {postcode}. Please update it before it ships.",
        "Can you change the address on my {product} order to {street}?",
    ],
    "login_problem": [
        "I can't log in even after resetting my password twice.",
        "I keep getting 'too many attempts' when I try to sign in.",
        "My password is right but the site won't let me log in to my account.",
        "I can't log in to my account.",
        'The app keeps saying "invalid credentials" even though my password is correct.',
        "login not working",
        "I'm stuck on the sign-in page, it just spins.",
        "The two-factor code never arrives so I can't get in.",
        "I get error {errcode} when I try to sign in.",
        "Can't access my account on my {device}, it works on desktop though.",
        "The login page says my email isn't registered but I've had an account for years.",
        "After the update I keep getting logged out and can't sign back in.",
        "Sign in with Google isn't working for me.",
        "cant login on {device}",
        "My verification code is rejected every time I log in.",
        "The website won't let me log in, it just redirects to the home page.",
        "I changed my email and now I can't log in with either one.",
        'Login fails with "session expired" immediately.',
        "I can't get into my account, is the site down?",
        "It says my account doesn't exist when I try to log in.",
        "Since {date} the {device} app won't log me in.",
    ],
    "password_reset": [
        "I can't log in because I forgot my password, how do I get a new one?",
        'My account got locked so I need to reset my password.',
        'I think my account was hacked, how do I change my password?',
        "How do I reset my password?",
        "I forgot my password.",
        "The password reset link isn't working.",
        "reset password email never came",
        "I need to change my password, I think someone might know it.",
        "The reset link says it has expired.",
        "forgot pw, help",
        "I'm trying to set a new password but it says it doesn't meet the requirements.",
        "Please send me a password reset link to my new email.",
        "I reset my password but the new one doesn't work.",
        "How often do I have to change my password?",
        "Where is the 'forgot password' option in the {device} app?",
        "I clicked reset password {qty} times and got nothing.",
        "can you reset my password for me",
        "I can't remember my password or the answer to my security question.",
        "The password reset code is not accepted.",
        "I want to update my password but I don't know the old one.",
        "Requested a new password on {date}, still no email.",
    ],
    "account_locked": [
        "I can't log in, it says my account is on hold.",
        'Locked out after the password reset, says account disabled for security.',
        'My account was locked after a suspicious login, please restore access.',
        "My account has been locked.",
        "It says my account is locked after too many attempts.",
        "account suspended??",
        "Why was my account disabled?",
        "I got a message that my account is temporarily locked for security reasons.",
        "Please unlock my account, I need to place an order.",
        "I entered the wrong PIN three times and now I'm locked out.",
        "My account was frozen without any warning.",
        "How long does the lockout last?",
        "account locked cant do anything",
        "You blocked my account after I logged in from {city}, that was me travelling.",
        "I was told my account is under review and restricted.",
        "Locked out of my account since {date}, please help.",
        'The app says "account blocked, contact support".',
        "My account got locked when I tried to reset my password.",
        "Can you reactivate my deactivated account?",
        "Too many failed attempts - account locked. How do I unlock it?",
        "Why is my account restricted? I can't check out my {product}.",
    ],
    "card_lost_or_stolen": [
        'My card was stolen and I think the thief has already used it.',
        'I lost my card, is it safe or should I worry about charges?',
        "Please block my card, I can't find it and I see a payment of {amount} I didn't make.",
        "I lost my card.",
        "My wallet was stolen with my card in it, please block it.",
        "lost card, need a replacement",
        "I can't find my {cardtype} card anywhere, can you freeze it?",
        "My card was stolen yesterday in {city}.",
        "I left my card at a restaurant and now it's gone.",
        "Please cancel my card ending {card4}, it's been lost.",
        "How do I order a replacement card? Mine is lost.",
        "Someone stole my bag with my {cardtype} card in it.",
        "card missing, please block",
        "I think I dropped my card on the train this morning.",
        "My new card never arrived in the post and I think it was stolen.",
        "Report a stolen card",
        "I misplaced my {cardtype} card, can I temporarily lock it?",
        "Lost my card abroad, how fast can you send a new one to {city}?",
        "I was pickpocketed and the card was in my purse.",
        "Need to report my card lost and get a new one before {date}.",
        "Can't find my card since {date}, please stop it.",
    ],
    "card_compromised": [
        'Someone took money from my account, do I need a new card?',
        "There's a {amount} charge from {merchant} I don't recognise, I still have my card.",
        "I don't recognise two payments of {amount}, please check if it's fraud.",
        "There are transactions on my card I didn't make.",
        "I see a charge of {amount} from {merchant} that I don't recognise.",
        "fraud on my account",
        "Someone used my card online without my permission.",
        "I got a text about a {amount} purchase I never made.",
        "My card details were stolen in a data breach but I still have the card.",
        "Unauthorised payments of {amount} to {merchant}, please block my card.",
        "I think my card has been cloned.",
        "There's a payment in {country} but I've never been there.",
        "suspicious transactions on my card",
        "Multiple small charges I don't recognise appeared on {date}.",
        "I want to dispute a fraudulent charge of {amount}.",
        "Somebody is using my card details, I still have the physical card.",
        "Got an alert for a purchase at {merchant}, that wasn't me.",
        "My account was hacked and someone made purchases with my saved card.",
        "Please investigate unauthorized transactions on my account since {date}.",
        "Charged {amount} by a company I've never heard of.",
        "My card was used at {merchant} in {country} while it was in my pocket.",
    ],
    "update_payment_method": [
        'My card was replaced after fraud, please update the card on my {plan}.',
        'I got a new card after losing the old one, how do I update my payment details?',
        'Your system keeps charging my old card, use the new one instead.',
        "I need to update my card details.",
        "How do I change the payment method on my account?",
        "my card expired, how do i add a new one",
        "Please switch my billing to {paymethod}.",
        "I want to remove my old card and add a new one.",
        "Can I pay with {paymethod} instead of a card?",
        "My payment failed because my card expired last month.",
        "update card",
        "My bank replaced my card, how do I update it for my {plan}?",
        "The site won't accept my new card number.",
        "Can I set a different default payment method?",
        "I'd like to use my company card for future invoices.",
        "Change my direct debit to a different bank account.",
        "Where do I edit my saved payment info?",
        "Payment declined, I need to put in a new card.",
        "add {paymethod} as a payment option",
        "Please replace the card ending {card4} with my new one.",
        "From {date} please charge my {plan} to {paymethod} instead.",
    ],
    "complaint": [
        'I was charged twice and your agent was rude when I called about it.',
        'My order was late and nobody answered my emails for {days} days.',
        'Really poor service, I had to explain the same issue to {qty} different people.',
        "I'm very unhappy with the service I received.",
        "Your customer service agent was rude to me on the phone.",
        "terrible service",
        "I've been on hold for {mins} minutes, this is ridiculous.",
        "I want to make a formal complaint.",
        "Nobody has replied to my emails in {days} days.",
        "The staff at your {city} store were dismissive and unhelpful.",
        "I was promised a callback on {date} that never happened.",
        "Worst customer experience I've ever had.",
        "Your chatbot is useless and I can't reach a human.",
        "I keep getting passed between departments and nobody takes responsibility.",
        "I'd like to speak to a manager about how I was treated.",
        "The quality of your products has really gone downhill.",
        "I'm disappointed with how my issue with order {order} was handled.",
        "You keep sending me marketing emails after I unsubscribed.",
        "The driver was rude and threw my parcel over the fence.",
        "I've been a customer for {years} years and I'm thinking of leaving.",
        "The agent hung up on me when I asked about my {product}.",
    ],
}

# ---------------------------------------------------------------------------
# Slot values.
# ---------------------------------------------------------------------------
PRODUCTS = [
    "wireless headset", "coffee maker", "pair of running shoes", "phone case", "laptop stand",
    "winter jacket", "smart watch", "blender", "desk lamp", "yoga mat", "bluetooth speaker",
    "backpack", "kettle", "gaming mouse", "air fryer", "baby monitor", "electric toothbrush",
    "vacuum cleaner", "office chair", "tablet", "hair dryer", "mechanical keyboard",
    "frying pan", "duvet cover", "webcam", "e-reader", "standing desk", "water bottle",
]
PLANS = [
    "Premium plan", "monthly subscription", "Pro membership", "annual plan", "family plan",
    "streaming add-on", "Plus subscription", "business plan", "storage upgrade",
]
FEES = ["service fee", "platform charge", "admin fee", "SVC-ADJ", "late payment fee",
        "currency conversion fee", "regulatory recovery fee", "misc. adjustment"]
PAYMETHODS = ["PayPal", "Apple Pay", "Google Pay", "bank transfer", "direct debit",
              "a credit card", "SEPA debit", "Klarna"]
CITIES = ["Manchester", "Leeds", "Berlin", "Dublin", "Lyon", "Austin", "Denver", "Toronto",
          "Glasgow", "Rotterdam", "Madrid", "Bristol", "Chicago", "Melbourne"]
COUNTRIES = ["Brazil", "Romania", "Vietnam", "Nigeria", "Indonesia", "Mexico", "Ukraine", "Peru"]
MERCHANTS = ["AMZN MKTP", "STEAMGAMES.COM", "UBER *TRIP", "ALIEXPRESS", "NETFLIX.COM",
             "SQ *COFFEE HOUSE", "PAYPAL *XBOX", "GOOGLE *PLAY", "BOLT.EU", "TEMU.COM"]
COLORS = ["black", "white", "navy", "red", "grey", "green", "beige", "pink"]
DEVICES = ["iPhone", "Android phone", "iPad", "phone", "Samsung", "work laptop", "Mac"]
CARDTYPES = ["debit", "credit", "business", "Visa", "Mastercard", "prepaid"]
STREETS = ["12 Oak Lane", "221 Baker Street", "48 Elm Road", "7 Harbour View", "1600 Maple Ave",
           "Flat 3, 19 Mill Street", "55 Queen's Road", "9 Rue des Lilas", "310 Pine St Apt 4B"]
POSTCODES = ["M1 4BT", "LS6 2QE", "BS8 1TH", "10115", "D02 X285", "78701", "G12 8QQ", "SW1A 2AA"]
ERRCODES = ["403", "500", "AUTH-17", "E1023", "0x80070005", "LGN_002", "429"]
FIRST_NAMES = ["Sarah", "James", "Priya", "Tom", "Aisha", "Marco", "Emma", "Liam", "Chen",
               "Fatima", "Oliver", "Sofia", "Daniel", "Hannah", "Mateo", "Grace", "Ravi", "Zoe"]
LAST_NAMES = ["smith", "patel", "jones", "garcia", "nguyen", "brown", "kowalski", "okafor",
              "muller", "rossi", "oconnor", "haddad"]
EMAIL_DOMAINS = ["gmail.com", "outlook.com", "yahoo.co.uk", "icloud.com", "example.com",
                 "proton.me", "hotmail.com"]
PHONES = ["+44 20 7946 0958", "(555) 013-2447", "+1 415 555 0132", "07700 900123",
          "+353 1 555 0147", "(555) 019-8831", "+49 30 901820", "555-0176", "+44 161 496 0734"]
CARD4 = ["4242", "1881", "0005", "7310", "9921", "3456", "6012", "1117", "8800"]

MONTH_ABBR = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sept", "Oct", "Nov", "Dec"]
MONTH_FULL = ["January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        suf = "th"
    else:
        suf = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suf}"


def fmt_amount(rng: random.Random) -> str:
    cur = rng.choices(["$", "€", "£", "USD"], weights=[5, 3, 3, 1])[0]
    r = rng.random()
    if r < 0.55:
        val = f"{rng.randint(4, 199)}.{rng.choice(['99', '49', '00', '95', '50', '19'])}"
    elif r < 0.85:
        val = str(rng.randint(5, 150))
    else:
        val = f"{rng.randint(1, 2)},{rng.randint(0, 999):03d}.{rng.choice(['00', '99'])}"
    return f"{val} USD" if cur == "USD" else f"{cur}{val}"


def fmt_date(rng: random.Random, created: dt.datetime) -> str:
    """A date mentioned in the text, a little before the ticket was created."""
    d = created - dt.timedelta(days=rng.randint(1, 20))
    style = rng.randrange(8)
    if style == 0:
        return f"{MONTH_ABBR[d.month - 1]} {d.day}"
    if style == 1:
        return f"{d.day:02d}/{d.month:02d}"
    if style == 2:
        return f"{MONTH_FULL[d.month - 1]} {ordinal(d.day)}"
    if style == 3:
        return f"the {ordinal(d.day)}"
    if style == 4:
        return f"last {WEEKDAYS[d.weekday()]}"
    if style == 5:
        return d.strftime("%Y-%m-%d")
    if style == 6:
        return f"{d.month}/{d.day}"
    return f"{WEEKDAYS[d.weekday()]} {d.day} {MONTH_ABBR[d.month - 1]}"


def fmt_order(rng: random.Random) -> str:
    letter = rng.choice("ABCDEHKMRX")
    num = rng.randint(10000, 99999)
    style = rng.choices(["hash", "bare", "digits"], weights=[6, 2, 2])[0]
    if style == "hash":
        return f"#{letter}{num}"
    if style == "bare":
        return f"{letter}{num}"
    return f"#{num}"


def make_email(rng: random.Random) -> str:
    first = rng.choice(FIRST_NAMES).lower()
    last = rng.choice(LAST_NAMES)
    sep = rng.choice([".", "_", "", "."])
    tail = rng.choice(["", "", str(rng.randint(1, 99))])
    return f"{first}{sep}{last}{tail}@{rng.choice(EMAIL_DOMAINS)}"


SLOT_RE = re.compile(r"\{(\w+)\}")


def fill_slots(template: str, rng: random.Random, created: dt.datetime) -> str:
    cache: dict[str, str] = {}

    def value(name: str) -> str:
        if name in cache:
            return cache[name]
        if name in ("product", "product2"):
            v = rng.choice(PRODUCTS)
            if name == "product2":
                while v == cache.get("product"):
                    v = rng.choice(PRODUCTS)
        elif name in ("amount", "amount2"):
            v = fmt_amount(rng)
        elif name == "date":
            v = fmt_date(rng, created)
        elif name == "order":
            v = fmt_order(rng)
        elif name == "days":
            v = str(rng.choice([3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 18, 21]))
        elif name == "mins":
            v = str(rng.choice([35, 40, 45, 50, 55, 60, 75, 90]))
        elif name == "years":
            v = str(rng.randint(2, 15))
        elif name == "qty":
            v = str(rng.randint(2, 6))
        elif name == "plan":
            v = rng.choice(PLANS)
        elif name == "fee":
            v = rng.choice(FEES)
        elif name == "paymethod":
            v = rng.choice(PAYMETHODS)
        elif name == "month":
            v = rng.choice(["August", "September", "October", "last month", "Q3"])
        elif name == "invoice":
            v = f"INV-{rng.randint(2026000, 2026999)}"
        elif name == "city":
            v = rng.choice(CITIES)
        elif name == "country":
            v = rng.choice(COUNTRIES)
        elif name == "merchant":
            v = rng.choice(MERCHANTS)
        elif name in ("color", "color2"):
            v = rng.choice(COLORS)
            if name == "color2":
                while v == cache.get("color"):
                    v = rng.choice(COLORS)
        elif name == "device":
            v = rng.choice(DEVICES)
        elif name == "cardtype":
            v = rng.choice(CARDTYPES)
        elif name == "card4":
            v = rng.choice(CARD4)
        elif name == "street":
            v = rng.choice(STREETS)
        elif name == "postcode":
            v = rng.choice(POSTCODES)
        elif name == "flat":
            v = str(rng.randint(1, 42)) + rng.choice(["", "", "A", "B"])
        elif name == "errcode":
            v = rng.choice(ERRCODES)
        else:
            raise KeyError(f"unknown slot {name!r} in template {template!r}")
        cache[name] = v
        return v

    out = SLOT_RE.sub(lambda m: value(m.group(1)), template)
    out = re.sub(r"\b([Aa]) (?=[aeiouAEIOU])(?!one|use|uni|eu)", r"\1n ", out)  # a e-reader -> an e-reader
    return out.replace("on last ", "last ")


# ---------------------------------------------------------------------------
# Register, openers/closers, cues, PII, typos.
# ---------------------------------------------------------------------------
POLITE_OPENERS = ["Hi,", "Hello team,", "Dear Support,", "Good morning,", "Hello,",
                  "Hi there,", "Dear Sir or Madam,", "Good afternoon,", "Hello support team,"]
POLITE_PREAMBLES = ["I hope you're well.", "I hope you can help me.",
                    "I'm writing regarding my account.", "Sorry to bother you.",
                    "I have a quick question.", "I'm contacting you about a recent issue."]
POLITE_CLOSERS = ["Thanks,", "Kind regards,", "Many thanks in advance.", "Thank you for your help.",
                  "Best regards,", "Thanks in advance.", "Cheers,", "Looking forward to your reply."]
CASUAL_OPENERS = ["hi", "hey", "hello", "hiya", "hi there", "yo"]
CASUAL_CLOSERS = ["thanks", "thx", "ty", "pls", "asap", "cheers", "pls help", "thank u"]
ANGRY_TAILS = ["Sort it out!", "Ridiculous.", "Fix this NOW.", "Absolutely useless.",
               "I'm furious.", "Not good enough!", "What a joke."]
URGENCY_CUES = [
    "This is the third time I'm contacting you about this.",
    "Still waiting for a response.",
    "I need this fixed immediately.",
    "This is unacceptable.",
    "Please treat this as urgent.",
    "I've asked twice already and nobody has helped.",
    "I'm extremely frustrated.",
    "This is urgent, I need it sorted today.",
    "still waiting!!",
    "Honestly this is unacceptable.",
    "If this isn't resolved today I'll be going to my bank.",
    "I'm really upset about this.",
]
ANGRY_WORDS = ["still", "again", "never", "twice", "not", "wrong", "broken", "now", "nothing",
               "can't", "won't", "immediately", "late", "useless", "locked", "stolen"]

MISSPELLINGS = {
    "receive": "recieve", "received": "recieved", "receiving": "recieving",
    "account": "acount", "password": "pasword", "refund": "refnd", "refunded": "refundd",
    "address": "adress", "delivery": "delivary", "cancel": "cancell", "cancelled": "canceled",
    "subscription": "subscripton", "charged": "chargd", "until": "untill",
    "immediately": "immediatly", "payment": "payemnt", "because": "becuase", "order": "oder",
    "package": "packge", "already": "allready", "definitely": "definately",
    "transactions": "transations", "unauthorised": "unauthorized", "wallet": "walet",
    "arrived": "arived", "tracking": "traking", "separate": "seperate", "invoice": "invoce",
    "replacement": "replacment", "business": "buisness", "which": "wich", "their": "thier",
    "weird": "wierd", "shipping": "shiping", "expired": "expierd", "login": "loggin",
    "statement": "statment", "message": "mesage", "necessary": "neccessary",
}
WORD_RE = re.compile(r"[A-Za-z']+")


def typo_word(word: str, rng: random.Random) -> str:
    lw = word.lower()
    if lw in MISSPELLINGS and rng.random() < 0.7:
        new = MISSPELLINGS[lw]
        if word[0].isupper():
            new = new[0].upper() + new[1:]
        if word.isupper() and len(word) > 1:
            new = new.upper()
        return new
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(3)
    if op == 0:  # swap adjacent letters
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == 1:  # drop a letter
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]  # double a letter


def inject_typos(text: str, rng: random.Random) -> str:
    spans = [m for m in WORD_RE.finditer(text) if len(m.group()) >= 4 or m.group().lower() in MISSPELLINGS]
    if not spans:
        return text
    # Prefer words with a well-known misspelling.
    known = [m for m in spans if m.group().lower() in MISSPELLINGS]
    n = 1 if rng.random() < 0.7 else 2
    chosen: list[re.Match] = []
    for _ in range(n):
        pool = known if known and rng.random() < 0.6 else spans
        m = rng.choice(pool)
        if all(m.start() != c.start() for c in chosen):
            chosen.append(m)
    for m in sorted(chosen, key=lambda m: m.start(), reverse=True):
        text = text[:m.start()] + typo_word(m.group(), rng) + text[m.end():]
    return text


def pii_sentence(intent: str, rng: random.Random) -> str:
    options = [
        lambda: f"You can reach me at {make_email(rng)}.",
        lambda: f"My number is {rng.choice(PHONES)} if you need to call.",
        lambda: f"Please call me back on {rng.choice(PHONES)}.",
        lambda: f"My account email is {make_email(rng)}.",
        lambda: f"Contact: {make_email(rng)} / {rng.choice(PHONES)}",
    ]
    if intent in ("billing_question", "double_charge", "refund_request", "card_lost_or_stolen",
                  "card_compromised", "update_payment_method", "cancel_subscription"):
        options += [
            lambda: f"It's the card ending {rng.choice(CARD4)}.",
            lambda: f"I paid with my Visa ending {rng.choice(CARD4)}.",
        ]
    return rng.choice(options)()


def shout(text: str, rng: random.Random) -> str:
    if rng.random() < 0.3:
        return text.upper()
    words = text.split(" ")
    for i, w in enumerate(words):
        core = w.strip(".,!?'").lower()
        if core in ANGRY_WORDS and rng.random() < 0.8:
            words[i] = w.upper()
    return " ".join(words)


def angrify_punct(text: str, rng: random.Random) -> str:
    text = text.rstrip()
    while text and text[-1] in ".!?":
        text = text[:-1]
    return text + rng.choice(["!!!", "!!", "!?!", "!!!!", "?!"])


def chatify(text: str, rng: random.Random) -> str:
    text = text.lower()
    if rng.random() < 0.7:
        text = text.rstrip(".")
    if rng.random() < 0.5:
        text = text.replace("'", "")
    if rng.random() < 0.4:
        text = re.sub(r"\byou\b", "u", text)
    if rng.random() < 0.3:
        text = text.replace("please", "pls")
    return text


# Intent-neutral context sentences shared by related intents (adds realistic
# vocabulary overlap without changing the label).
CONTEXT = {
    "order": ["I ordered a {product} on {date}.", "My order number is {order}.",
              "I bought a {product} from you recently.", "This is about order {order}.",
              "I paid {amount} for it."],
    "payment": ["I'm on the {plan}.", "I pay by card every month.", "My last payment was {amount}.",
                "I checked my banking app this morning.", "This is about my {cardtype} card."],
    "account": ["I use the {device} app.", "I've had my account for {years} years.",
                "I'm on the {plan}.", "I was trying to log in this morning."],
    "general": ["I've been a customer for {years} years.", "I already contacted you on {date}.",
                "I've tried the help pages."],
}
INTENT_CONTEXT = {
    "billing_question": ["payment", "general"], "double_charge": ["payment", "order"],
    "refund_request": ["order", "payment"], "cancel_subscription": ["payment", "account"],
    "delivery_delayed": ["order"], "wrong_item": ["order"], "damaged_item": ["order"],
    "order_status": ["order"], "change_address": ["order", "account"],
    "login_problem": ["account"], "password_reset": ["account"], "account_locked": ["account"],
    "card_lost_or_stolen": ["payment"], "card_compromised": ["payment", "account"],
    "update_payment_method": ["payment", "account"],
    "complaint": ["general", "order", "payment", "account"],
}

# Confusable neighbours: used for secondary mentions in the text ("...and I want a
# refund") and for a small rate of annotation noise, as in real labelled tickets.
NEIGHBOURS = {
    "billing_question": ["double_charge", "cancel_subscription", "update_payment_method"],
    "double_charge": ["refund_request", "billing_question", "card_compromised"],
    "refund_request": ["damaged_item", "double_charge", "wrong_item", "cancel_subscription"],
    "cancel_subscription": ["refund_request", "billing_question"],
    "delivery_delayed": ["order_status", "complaint"],
    "wrong_item": ["damaged_item", "refund_request"],
    "damaged_item": ["wrong_item", "refund_request"],
    "order_status": ["delivery_delayed", "change_address"],
    "change_address": ["order_status", "delivery_delayed"],
    "login_problem": ["password_reset", "account_locked"],
    "password_reset": ["login_problem", "account_locked"],
    "account_locked": ["login_problem", "password_reset"],
    "card_lost_or_stolen": ["card_compromised", "update_payment_method"],
    "card_compromised": ["card_lost_or_stolen", "double_charge", "account_locked"],
    "update_payment_method": ["card_lost_or_stolen", "billing_question"],
    "complaint": ["delivery_delayed", "refund_request", "cancel_subscription"],
}
SECONDARY = {
    "billing_question": "Also, can someone explain my last bill?",
    "double_charge": "I think I may have been charged twice as well.",
    "refund_request": "I'd like a refund for this.",
    "cancel_subscription": "I'm considering cancelling.",
    "delivery_delayed": "It's also really late.",
    "wrong_item": "Not sure it's even the right item.",
    "damaged_item": "The box was also damaged.",
    "order_status": "Can you also tell me where my order is?",
    "change_address": "I might need to change the address too.",
    "login_problem": "I also can't log in.",
    "password_reset": "Maybe I need a new password?",
    "account_locked": "It might be locked, I'm not sure.",
    "card_lost_or_stolen": "I can't find my card either.",
    "card_compromised": "There might be a payment I don't recognise too.",
    "update_payment_method": "I'll probably need to update my card afterwards.",
    "complaint": "Honestly your service has been poor.",
}
LABEL_NOISE = 0.025
SECONDARY_RATE = 0.10

REGISTER_WEIGHTS = {  # per channel: terse/neutral, polite, angry, chat
    "email": [2, 6, 2, 0.5],
    "chat": [3, 1, 1.5, 5],
    "phone": [6, 2, 2, 0.5],  # transcribed call notes / call-back requests
    "web_form": [5, 3, 1.5, 1],
    "app": [4, 1, 1.5, 4],
}
REGISTERS = ["neutral", "polite", "angry", "chat"]


def join_sentences(first: str, second: str) -> str:
    first = first.rstrip()
    if first and first[-1] not in ".?!:":
        first += "."
    if second[:1].islower():
        second = second[0].upper() + second[1:]
    return f"{first} {second}"


def render_text(intent: str, channel: str, created: dt.datetime, rng: random.Random,
                flags: dict[str, bool]) -> str:
    core = fill_slots(rng.choice(TEMPLATES[intent]), rng, created)
    register = rng.choices(REGISTERS, weights=REGISTER_WEIGHTS[channel])[0]
    if rng.random() < 0.25:
        group = rng.choice(INTENT_CONTEXT[intent])
        ctx = fill_slots(rng.choice(CONTEXT[group]), rng, created)
        core = join_sentences(ctx, core) if rng.random() < 0.6 else join_sentences(core, ctx)
    if rng.random() < SECONDARY_RATE:
        core = join_sentences(core, SECONDARY[rng.choice(NEIGHBOURS[intent])])

    # Typos go into the customer's own words before PII / cues are attached, and never
    # touch tokens with digits (order numbers, amounts) because WORD_RE is letters only.
    if flags["typo"]:
        core = inject_typos(core, rng)

    extras: list[str] = []
    if flags["urgent"]:
        extras.append(rng.choice(URGENCY_CUES))
    if flags["pii"]:
        extras.append(pii_sentence(intent, rng))

    if register == "polite":
        if core[:1].islower() and not core.startswith("i "):
            core = core[0].upper() + core[1:]
        if core[-1] not in ".?!":
            core += "."
        parts = [rng.choice(POLITE_OPENERS)]
        if rng.random() < 0.5:
            parts.append(rng.choice(POLITE_PREAMBLES))
        parts.append(core)
        parts.extend(extras)
        closer = rng.choice(POLITE_CLOSERS)
        if closer.endswith(",") and rng.random() < 0.8:
            closer += " " + rng.choice(FIRST_NAMES)
        elif closer.endswith(","):
            closer = closer[:-1] + "."
        parts.append(closer)
        sep = "\n" if channel == "email" and rng.random() < 0.35 else " "
        return sep.join(parts)

    if register == "angry":
        core = shout(core, rng)
        core = angrify_punct(core, rng)
        parts = [core] + extras
        if rng.random() < 0.5:
            parts.append(rng.choice(ANGRY_TAILS))
        return " ".join(parts)

    if register == "chat":
        parts = []
        if rng.random() < 0.45:
            parts.append(rng.choice(CASUAL_OPENERS))
        parts.append(chatify(core, rng))
        parts.extend(e.lower() if rng.random() < 0.5 else e for e in extras)
        if rng.random() < 0.4:
            parts.append(rng.choice(CASUAL_CLOSERS))
        return " ".join(parts)

    # neutral / terse
    parts = []
    if rng.random() < 0.2:
        parts.append(rng.choice(["Hi,", "Hello,", "Hi team,", "Hey,"]))
    parts.append(core)
    parts.extend(extras)
    if rng.random() < 0.2:
        parts.append(rng.choice(["Thanks.", "thanks", "Thank you.", "asap please", "Cheers."]))
    return " ".join(parts)


# ---------------------------------------------------------------------------
# Customers and metadata.
# ---------------------------------------------------------------------------
CHANNELS = ["email", "chat", "phone", "web_form", "app"]
CHANNEL_WEIGHTS = [30, 25, 15, 15, 15]


def make_customers(rng: random.Random) -> tuple[list[dict], list[float]]:
    customers = []
    for i in range(1, N_CUSTOMERS + 1):
        tier = rng.choices(["standard", "premium", "business"], weights=[70, 20, 10])[0]
        pref = rng.choices(CHANNELS, weights=CHANNEL_WEIGHTS)[0]
        customers.append({"id": f"C{i:04d}", "tier": tier, "channel": pref})
    # Heavy-tailed contact frequency so many customers have several tickets.
    ranks = list(range(N_CUSTOMERS))
    rng.shuffle(ranks)
    weights = [1.0 / (r + 20) ** 0.7 for r in ranks]
    return customers, weights


def random_timestamp(rng: random.Random) -> dt.datetime:
    total = int((END - START).total_seconds())
    # Bias towards office hours: resample nights half of the time.
    while True:
        t = START + dt.timedelta(seconds=rng.randrange(total))
        if 7 <= t.hour <= 21 or rng.random() < 0.35:
            return t


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate(seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    customers, cweights = make_customers(rng)
    seen: set[str] = set()
    train: list[dict] = []
    test: list[dict] = []
    per_intent = TRAIN_PER_INTENT + TEST_PER_INTENT

    for intent in TEMPLATES:
        rows: list[dict] = []
        attempts = 0
        while len(rows) < per_intent:
            attempts += 1
            if attempts > per_intent * 200:
                raise RuntimeError(f"could not generate enough unique texts for {intent}")
            cust = rng.choices(customers, weights=cweights)[0]
            channel = cust["channel"] if rng.random() < 0.6 else rng.choices(CHANNELS, weights=CHANNEL_WEIGHTS)[0]
            created = random_timestamp(rng)
            flags = {
                "typo": rng.random() < 0.25,
                "urgent": rng.random() < 0.10,
                "pii": rng.random() < 0.05,
            }
            # Annotation noise: a few rows get text about a confusable neighbour intent
            # while keeping this label, so per-intent counts stay exact.
            source = intent
            if rng.random() < LABEL_NOISE:
                source = rng.choice(NEIGHBOURS[intent])
            text = render_text(source, channel, created, rng, flags)
            key = re.sub(r"\s+", " ", text.strip().lower())
            if key in seen:
                continue
            seen.add(key)
            rows.append({
                "text": text,
                "intent": intent,
                "customer_id": cust["id"],
                "customer_tier": cust["tier"],
                "channel": channel,
                "_t": created,
            })
        rng.shuffle(rows)
        train.extend(rows[:TRAIN_PER_INTENT])
        test.extend(rows[TRAIN_PER_INTENT:])

    for rows, prefix in ((train, "T"), (test, "E")):
        rows.sort(key=lambda r: (r["_t"], r["intent"], r["text"]))
        for i, r in enumerate(rows, 1):
            r["id"] = f"{prefix}{i:05d}"
            r["created_at"] = iso(r.pop("_t"))
    return train, test


# ---------------------------------------------------------------------------
# A shifted batch for the drift-check demo: a week in which a carrier problem
# triples the delivery complaints and customers start asking about something
# the model was never trained on (gift cards).
# ---------------------------------------------------------------------------
SHIFT_SEED = 20261201
SHIFT_ROWS = 400
SURGING = ["delivery_delayed", "damaged_item", "wrong_item"]
SURGE_SHARE = 0.30
EMERGING_INTENT = "gift_card"
EMERGING_SHARE = 0.12
EMERGING_TEMPLATES = [
    "My gift card for {amount} says it has already been redeemed but I never used it.",
    "How do I check the balance on my gift card?",
    "The gift card code from my birthday doesn't work at checkout, it says invalid code.",
    "Can I use two gift cards on one order?",
    "I bought a {amount} gift card on {date} and the recipient never got the email with the code.",
    "Do your gift cards expire? Mine is from last year.",
    "gift card wont apply to order {order}",
    "Can I get a refund on an unused gift card worth {amount}?",
    "I want to send an e-gift card to my sister, can I schedule it for {date}?",
    "The gift card balance shows {amount} but it should be {amount2}.",
    "Is it possible to turn my store credit into a gift card?",
    "my gift card got declined even though it has {amount} on it",
    "Where do I enter a gift card code in the app?",
    "Someone gave me a gift card but the PIN on the back is scratched off.",
    "Can I top up a gift card or do I have to buy a new one?",
    "How many gift cards can I buy at once for my team?",
]


def shifted_batch(seed: int) -> list[dict]:
    """The demo's drift-check batch: surging delivery intents and an emerging gift-card topic."""
    rng = random.Random(seed)
    customers, cweights = make_customers(rng)
    intents = list(TEMPLATES)
    rows: list[dict] = []
    seen: set[str] = set()
    while len(rows) < SHIFT_ROWS:
        cust = rng.choices(customers, weights=cweights)[0]
        channel = cust["channel"] if rng.random() < 0.6 else rng.choices(CHANNELS, weights=CHANNEL_WEIGHTS)[0]
        created = random_timestamp(rng)
        draw = rng.random()
        if draw < EMERGING_SHARE:
            intent = EMERGING_INTENT
            text = fill_slots(rng.choice(EMERGING_TEMPLATES), rng, created)
            if rng.random() < 0.4:
                text = rng.choice(["Hi,", "Hello,", "Hi team,"]) + " " + text
        else:
            intent = rng.choice(SURGING) if draw < EMERGING_SHARE + SURGE_SHARE else rng.choice(intents)
            flags = {"typo": rng.random() < 0.25, "urgent": rng.random() < 0.10, "pii": rng.random() < 0.05}
            text = render_text(intent, channel, created, rng, flags)
        key = re.sub(r"\s+", " ", text.strip().lower())
        if key in seen:
            continue
        seen.add(key)
        rows.append({"text": text, "intent": intent, "customer_id": cust["id"],
                     "customer_tier": cust["tier"], "channel": channel, "_t": created})
    rows.sort(key=lambda r: (r["_t"], r["intent"], r["text"]))
    for i, r in enumerate(rows, 1):
        r["id"] = f"S{i:05d}"
        r["created_at"] = iso(r.pop("_t"))
    return rows


# ---------------------------------------------------------------------------
# Out-of-scope queries in the training data: what a shop's support inbox also
# receives (small talk, other companies' business, general knowledge). cqr keeps
# them aside to fit its abstain rule; tests/fixtures/out_of_scope.csv is a
# separate, hand-written set that the tests and the README evaluate on.
# ---------------------------------------------------------------------------
OOS_SEED = 20261202
OOS_ROWS = 60
# Topics chosen apart from the test fixture's (weather, cooking, trivia, music...), so that
# evaluating on it measures queries the rule has not seen the like of.
OOS_TEMPLATES = [
    "Is my {bank} bank account going to be charged interest this month?",
    "Do you know when my {bank} credit card statement closes?",
    "my {appliance} from another shop is broken, how do I fix it",
    "How do I reset the router my internet provider gave me?",
    "my phone contract with my mobile carrier ends soon, should I switch",
    "how do i file my taxes",
    "can you help me write a birthday message for my friend",
    "hey are you a real person or a bot lol",
    "Do I need a visa to visit {country}?",
    "What vaccinations does my {pet} need?",
    "How do I apply for a job at {employer}?",
    "Which insurance should I get for my {vehicle}?",
    "My neighbour's dog barks all night, what can I do?",
    "How much should I tip a taxi driver in {country}?",
    "Can you help me with my {subject} homework?",
    "Can you explain how mortgages work?",
    "How do I renew my driving licence?",
    "What's the phone number for the {city} city council?",
    "is it safe to give my {pet} {food}",
    "I'd like to donate to a charity, which one is best?",
    "what's the exchange rate from euros to dollars today",
    "Where can I vote in the {city} local election?",
]
OOS_SLOTS = {
    "bank": ["Chase", "HSBC", "Santander", "ING"],
    "appliance": ["washing machine", "dishwasher", "vacuum", "microwave"],
    "country": ["Canada", "Peru", "Kenya", "Norway", "Vietnam"],
    "pet": ["cat", "dog", "rabbit", "parrot"],
    "employer": ["a supermarket", "the post office", "a bank", "the hospital"],
    "vehicle": ["car", "motorbike", "van", "camper"],
    "subject": ["maths", "history", "chemistry", "French"],
    "city": ["Leeds", "Porto", "Lyon", "Denver", "Adelaide"],
    "food": ["grapes", "chocolate", "cheese", "onions"],
}


def out_of_scope_rows(first_id: int, after: dt.datetime) -> list[dict]:
    rng = random.Random(OOS_SEED)
    customers, cweights = make_customers(random.Random(SEED))
    seen: set[str] = set()
    rows: list[dict] = []
    while len(rows) < OOS_ROWS:
        template = rng.choice(OOS_TEMPLATES)
        text = re.sub(r"\{(\w+)\}", lambda m: rng.choice(OOS_SLOTS[m.group(1)]), template)
        if rng.random() < 0.25:
            text = text.lower().rstrip("?.!")
        if text in seen:
            continue
        seen.add(text)
        cust = rng.choices(customers, weights=cweights)[0]
        after = after + dt.timedelta(minutes=rng.randint(1, 90))
        rows.append({
            "id": f"T{first_id + len(rows):05d}",
            "text": text,
            "intent": "oos",
            "customer_id": cust["id"],
            "customer_tier": cust["tier"],
            "channel": rng.choices(CHANNELS, weights=CHANNEL_WEIGHTS)[0],
            "created_at": iso(after),
        })
    return rows


# ---------------------------------------------------------------------------
# Customer history: the past contacts of the customers in the ticket files, as
# `cqr respond --history` reads them. Each row is a contact with its status and,
# once resolved or closed, the agent's reply. Besides older contacts (Jun-Aug
# 2026), some test tickets get a planted repeat: the same customer on the same
# intent 2-60 hours earlier, still open; a few get an unrelated open issue.
# Drawn from its own seeds, so tickets*.csv are unchanged by it.
# ---------------------------------------------------------------------------
HISTORY_SEED = 20261203
HISTORY_BULK_SEED = 20261204
HISTORY_FIELDS = ["id", "customer_id", "created_at", "text", "intent", "status", "name",
                  "customer_tier", "reply"]
HISTORY_START = dt.datetime(2026, 6, 1, 0, 0, 0, tzinfo=dt.timezone.utc)
HISTORY_END = START  # the older contacts end where the tickets begin
BULK_START = dt.datetime(2025, 9, 1, 0, 0, 0, tzinfo=dt.timezone.utc)
NO_HISTORY_RATE = 0.04   # customers with no past contact at all
NO_NAME_RATE = 0.10      # customers whose name the history lacks
REPEAT_RATE = 0.12       # test tickets with an open same-intent contact 2-60 h before
OTHER_OPEN_RATE = 0.05   # test tickets with an open contact on another intent 1-10 days before
BULK_CONTACTS_PER_CUSTOMER = 8

STATUSES = ["resolved", "closed", "open", "pending", "escalated"]
OLD_STATUS_WEIGHTS = [81, 17, 0.5, 0.5, 1]     # more than 30 days before HISTORY_END
RECENT_STATUS_WEIGHTS = [60, 10, 12, 10, 8]

# What the agent answered when the contact was resolved. {order} and {amount} come from the
# contact's own text; a template is only used when its slots can be filled, so every intent
# has variants without them. No names, addresses, e-mails, phone or card numbers.
REPLY_TEMPLATES: dict[str, list[str]] = {
    "billing_question": [
        "The {amount} charge is your regular plan fee plus tax for this billing period; "
        "the full breakdown is under Billing > Invoices.",
        "I've checked your account: the charge covers your current billing period and includes "
        "tax. A copy of the invoice is now available in your account.",
        "I've reissued the invoice for order {order} with the corrected details; you can "
        "download it from your order history.",
        "That line item is a one-off prorated adjustment from your plan change, so it won't "
        "appear on future bills.",
        "Your plan renews on the same day each month at the price shown in your account "
        "settings. I've switched on a reminder three days before each renewal.",
    ],
    "double_charge": [
        "I've confirmed the duplicate payment of {amount} and refunded it to your original "
        "payment method; it should show within 5-7 working days.",
        "The second charge for order {order} was a duplicate and has been reversed. You'll see "
        "the refund on your statement within 5-7 working days.",
        "One of the two charges was only a pending authorisation and has now been released; "
        "only one payment was taken.",
        "I've refunded the duplicate charge in full. Depending on your bank it can take up to "
        "7 working days to appear.",
    ],
    "refund_request": [
        "I've issued a refund of {amount} for order {order}; it should reach your account "
        "within 5-7 working days.",
        "Your refund of {amount} has been processed to your original payment method and should "
        "appear within 5-7 working days.",
        "I've approved the refund for order {order}. You'll get a confirmation email once the "
        "payment has left our system.",
        "I've processed a full refund to your original payment method; please allow 5-7 "
        "working days for it to show.",
        "Your return has been received and the refund has been issued. Banks usually take 3-5 "
        "working days to display it.",
    ],
    "cancel_subscription": [
        "I've cancelled your subscription and turned off auto-renew; you'll keep access until "
        "the end of the current billing period.",
        "Your subscription has been cancelled with immediate effect and no further payments "
        "will be taken. A confirmation email is on its way.",
        "I've cancelled the subscription and refunded the last payment of {amount}, as it was "
        "taken after your cancellation request.",
        "Auto-renew is now switched off, so you won't be charged again. You can reactivate at "
        "any time from your account settings.",
    ],
    "delivery_delayed": [
        "Sorry that order {order} is running late. The courier has it scheduled for delivery "
        "within 2 working days, and I've refunded the shipping fee.",
        "The courier confirmed a delay at their depot; your parcel is moving again and you'll "
        "get an updated tracking link by email.",
        "Your parcel was held up in transit, so I've sent a replacement by express delivery at "
        "no extra cost.",
        "I've refunded the {amount} you paid because the delivery missed its promised date. "
        "The parcel itself is now out for delivery.",
        "I've opened a trace with the courier for order {order}; if it hasn't arrived within 3 "
        "working days we'll send a replacement.",
    ],
    "wrong_item": [
        "Sorry for the mix-up with order {order}. I've emailed you a prepaid return label and "
        "the correct item will be dispatched today.",
        "I've arranged for the correct item to be sent by express delivery; please use the "
        "prepaid label in your email to return the wrong one.",
        "The correct item is on its way and you can keep the one sent in error, there's no need "
        "to return it.",
        "I've refunded {amount} for the incorrect item and emailed you a prepaid return label.",
    ],
    "damaged_item": [
        "I'm sorry your item arrived damaged. A replacement has been dispatched and you don't "
        "need to return the damaged one.",
        "I've issued a full refund of {amount} for the damaged item; it should reach your "
        "account within 5-7 working days.",
        "I've arranged a free replacement for order {order}, which should arrive within 3-5 "
        "working days.",
        "Thanks for the photos. I've logged the damage with the courier and emailed you a "
        "prepaid return label; the replacement ships as soon as the return is scanned.",
    ],
    "order_status": [
        "Order {order} has been dispatched and is due within 2-3 working days; the tracking "
        "link is in your confirmation email.",
        "Your order has shipped and is with the courier. I've resent the tracking link to the "
        "email address on your account.",
        "Your order is being packed and will be dispatched within 24 hours; you'll get a "
        "tracking link by email when it leaves our warehouse.",
        "I've confirmed that order {order} is processed and the payment went through; it's "
        "scheduled to ship tomorrow.",
    ],
    "change_address": [
        "I've updated the delivery address on order {order} before it shipped; the new address "
        "is shown in your order details.",
        "The delivery address has been updated and the courier has been told about the change.",
        "I've updated the default address on your account, so future orders will go to the new "
        "address.",
        "Your parcel has been redirected to the new address; delivery may take one extra "
        "working day.",
    ],
    "login_problem": [
        "I've signed out all sessions on your account and reset the failed sign-in counter; you "
        "should be able to log in now. Updating the app or clearing your browser cache also helps.",
        "There was a temporary issue with our sign-in service, which has now been fixed. Please "
        "try logging in again.",
        "I've reset two-factor authentication on your account; you'll be asked to set it up "
        "again the next time you log in.",
        "Your account was still linked to an old sign-in method, which I've updated. You can "
        "now log in with your email and password.",
    ],
    "password_reset": [
        "I've sent a new password reset link to the email address on your account; it's valid "
        "for 24 hours.",
        "I've reset your password from our side. Please use the link we've just emailed you to "
        "choose a new one.",
        "Our reset emails were being caught by spam filters; I've sent the link again, so "
        "please check your inbox and spam folder.",
        "You can reset your password at any time with 'Forgot password' on the sign-in page. "
        "I've also sent you a fresh reset link.",
    ],
    "account_locked": [
        "I've verified your identity and unlocked your account; you can sign in again now.",
        "Your account was locked as a precaution after several failed sign-in attempts. It's "
        "unlocked now, and we recommend setting a new password.",
        "The security hold on your account has been lifted after our review, and everything is "
        "back to normal.",
        "I've reactivated your account. If it locks again, the lockout clears automatically "
        "after 30 minutes.",
    ],
    "card_lost_or_stolen": [
        "I've blocked the card and ordered a replacement, which should arrive within 3-5 "
        "working days.",
        "Your card has been cancelled and can't be used for any further payments. A new card is "
        "on its way to your registered address.",
        "I've frozen the card and raised a dispute for the {amount} payment you didn't make; "
        "you'll hear from us within 10 working days.",
        "The card is now permanently blocked and a replacement has been sent by express "
        "delivery.",
    ],
    "card_compromised": [
        "I've blocked your card, ordered a new one and raised a fraud claim for the "
        "transactions you didn't recognise.",
        "The {amount} charge has been disputed and credited back to your account while we "
        "investigate.",
        "I've cancelled the compromised card and refunded the unauthorised transactions. Your "
        "replacement card will arrive within 3-5 working days.",
        "Our fraud team confirmed the payments weren't made by you; the money has been returned "
        "and a new card is on its way.",
    ],
    "update_payment_method": [
        "I've updated the payment method on your account; your next payment will be taken from "
        "the new card.",
        "Your new payment details are saved and set as default, and the old card has been "
        "removed.",
        "I've switched your billing to the new payment method and retried the failed payment "
        "of {amount}, which went through.",
        "You can manage payment methods under Account > Billing. I've already removed the "
        "expired card for you.",
    ],
    "complaint": [
        "I'm sorry for the experience you've had. I've passed your feedback to the team lead "
        "and added a note to your account so it's followed up.",
        "Thank you for raising this, and I apologise. I've logged a formal complaint and added "
        "a goodwill credit to your account.",
        "I'm sorry about how your issue with order {order} was handled. I've reviewed the case "
        "and a manager will follow up within 2 working days.",
        "I apologise for the slow responses. Your case now has a dedicated agent who will keep "
        "you updated until it's closed.",
    ],
}
# Order ids as fmt_order writes them (#A12345, A12345, #12345) and amounts as fmt_amount
# does ($12.99, €5, £1,200.00, 12 USD); chat-style rows are lower-cased.
ORDER_RE = re.compile(r"(?<![\w#])(#?[A-Za-z]\d{5}|#\d{5})(?!\d)")
AMOUNT_RE = re.compile(r"[$€£]\d{1,3}(?:,\d{3})*(?:\.\d{2})?(?!\d)"
                       r"|(?<![\d.,])\d{1,3}(?:,\d{3})*(?:\.\d{2})? ?USD\b", re.IGNORECASE)


def text_facts(text: str) -> dict[str, str]:
    """The first order id and amount a customer's text mentions, normalised."""
    facts: dict[str, str] = {}
    m = ORDER_RE.search(text)
    if m:
        facts["order"] = m.group(1).upper()
    m = AMOUNT_RE.search(text)
    if m:
        facts["amount"] = re.sub(r"(?i)usd$", "USD", m.group(0))
    return facts


def agent_reply(intent: str, text: str, rng: random.Random) -> str:
    """The agent's reply to a resolved contact: a template whose slots the text can fill,
    preferring one that uses what the text mentions."""
    facts = text_facts(text)
    usable = [t for t in REPLY_TEMPLATES[intent] if set(SLOT_RE.findall(t)) <= facts.keys()]
    weights = [3 if SLOT_RE.search(t) else 1 for t in usable]
    template = rng.choices(usable, weights=weights)[0]
    return SLOT_RE.sub(lambda m: facts[m.group(1)], template)


def random_time_between(rng: random.Random, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
    """Like random_timestamp, between lo and hi (exclusive)."""
    total = int((hi - lo).total_seconds())
    while True:
        t = lo + dt.timedelta(seconds=rng.randrange(total))
        if 7 <= t.hour <= 21 or rng.random() < 0.35:
            return t


def history_status(rng: random.Random, created: dt.datetime) -> str:
    old = HISTORY_END - created > dt.timedelta(days=30)
    return rng.choices(STATUSES, weights=OLD_STATUS_WEIGHTS if old else RECENT_STATUS_WEIGHTS)[0]


def customer_name(rng: random.Random) -> str:
    if rng.random() < NO_NAME_RATE:
        return ""
    last = rng.choice(LAST_NAMES)
    last = "O'Connor" if last == "oconnor" else last.capitalize()
    return f"{rng.choice(FIRST_NAMES)} {last}"


def history_row(rng: random.Random, cust: dict, intent: str, channel: str, created: dt.datetime,
                status: str, seen: set[str] | None) -> dict:
    """One past contact. With `seen`, its text differs from every text seen so far."""
    for _ in range(500):
        flags = {
            "typo": rng.random() < 0.25,
            "urgent": rng.random() < 0.10,
            "pii": rng.random() < 0.05,
        }
        text = render_text(intent, channel, created, rng, flags)
        if seen is None:
            break
        key = re.sub(r"\s+", " ", text.strip().lower())
        if key not in seen:
            seen.add(key)
            break
    else:
        raise RuntimeError(f"could not generate a unique history text for {intent}")
    reply = agent_reply(intent, text, rng) if status in ("resolved", "closed") else ""
    return {
        "customer_id": cust["id"],
        "_t": created,
        "text": text,
        "intent": intent,
        "status": status,
        "name": cust["name"],
        "customer_tier": cust["tier"],
        "reply": reply,
    }


def number_history(rows: list[dict]) -> list[dict]:
    rows.sort(key=lambda r: (r["_t"], r["intent"], r["text"]))
    width = max(5, len(str(len(rows))))
    for i, r in enumerate(rows, 1):
        r["id"] = f"H{i:0{width}d}"
        r["created_at"] = iso(r.pop("_t"))
    return rows


def history(train: list[dict], test: list[dict], seed: int = HISTORY_SEED) -> list[dict]:
    """Past contacts of every customer in the ticket files (tier as there), plus the planted
    repeat contacts and unrelated open issues before some test tickets."""
    rng = random.Random(seed)
    intents = list(TEMPLATES)
    seen = {re.sub(r"\s+", " ", r["text"].strip().lower()) for r in train + test}
    tickets: dict[str, list[dict]] = {}
    for r in train + test:
        tickets.setdefault(r["customer_id"], []).append(r)
    customers: dict[str, dict] = {}
    for cid in sorted(tickets):
        own = tickets[cid]
        channels = [r["channel"] for r in own]
        customers[cid] = {
            "id": cid,
            "tier": own[0]["customer_tier"],
            "name": customer_name(rng),
            "channel": max(CHANNELS, key=channels.count),
        }

    rows: list[dict] = []
    # Older contacts: as many as the customer's tickets, give or take, so the busy customers
    # of the ticket files are the busy ones here too.
    for cid, cust in customers.items():
        if rng.random() < NO_HISTORY_RATE:
            continue
        n = max(1, round(len(tickets[cid]) * rng.uniform(0.5, 1.4)))
        for _ in range(n):
            channel = cust["channel"] if rng.random() < 0.6 else rng.choices(CHANNELS, weights=CHANNEL_WEIGHTS)[0]
            created = random_time_between(rng, HISTORY_START, HISTORY_END)
            rows.append(history_row(rng, cust, rng.choice(intents), channel, created,
                                    history_status(rng, created), seen))

    # Planted contacts before test tickets.
    repeats = rng.sample(test, round(REPEAT_RATE * len(test)))
    others = rng.sample(test, round(OTHER_OPEN_RATE * len(test)))
    for r in sorted(repeats, key=lambda r: r["id"]):
        t = dt.datetime.strptime(r["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
        created = t - dt.timedelta(seconds=rng.randint(2 * 3600, 60 * 3600))
        rows.append(history_row(rng, customers[r["customer_id"]], r["intent"], r["channel"],
                                created, "open", seen))
    for r in sorted(others, key=lambda r: r["id"]):
        t = dt.datetime.strptime(r["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
        created = t - dt.timedelta(seconds=rng.randint(86400, 10 * 86400))
        intent = rng.choice([i for i in intents if i != r["intent"]])
        rows.append(history_row(rng, customers[r["customer_id"]], intent, r["channel"],
                                created, rng.choice(["open", "pending"]), seen))
    return number_history(rows)


def bulk_history(n_rows: int, seed: int = HISTORY_BULK_SEED) -> list[dict]:
    """A large history for benchmarks: n_rows contacts of about n_rows/8 synthetic customers
    over the year before the tickets. Texts may repeat."""
    rng = random.Random(seed)
    intents = list(TEMPLATES)
    n_customers = max(1, round(n_rows / BULK_CONTACTS_PER_CUSTOMER))
    width = max(5, len(str(n_customers)))
    customers = [{
        "id": f"C{i:0{width}d}",
        "tier": rng.choices(["standard", "premium", "business"], weights=[70, 20, 10])[0],
        "name": customer_name(rng),
        "channel": rng.choices(CHANNELS, weights=CHANNEL_WEIGHTS)[0],
    } for i in range(1, n_customers + 1)]
    ranks = list(range(n_customers))
    rng.shuffle(ranks)
    cum: list[float] = []
    total = 0.0
    for r in ranks:  # heavy-tailed, as make_customers
        total += 1.0 / (r + 20) ** 0.7
        cum.append(total)
    picks = rng.choices(customers, cum_weights=cum, k=n_rows)
    rows = []
    for cust in picks:
        channel = cust["channel"] if rng.random() < 0.6 else rng.choices(CHANNELS, weights=CHANNEL_WEIGHTS)[0]
        created = random_time_between(rng, BULK_START, HISTORY_END)
        rows.append(history_row(rng, cust, rng.choice(intents), channel, created,
                                history_status(rng, created), None))
    return number_history(rows)


def write_csv(path: str, rows: list[dict], fields: list[str] = FIELDS) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in fields})
    print(f"wrote {path}: {len(rows)} rows")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default="data", help="output directory (default: data/)")
    ap.add_argument("--seed", type=int, default=SEED, help=f"random seed (default: {SEED})")
    ap.add_argument("--shifted-batch", metavar="PATH",
                    help="write only the drift-check demo's shifted batch (surging delivery "
                         "intents, an emerging gift-card topic) to PATH")
    ap.add_argument("--history-rows", type=int, metavar="N",
                    help="with --history-out: write only a benchmark history of exactly N rows "
                         "(about N/8 synthetic customers, Sep 2025 - Sep 2026)")
    ap.add_argument("--history-out", metavar="PATH", help="where --history-rows writes")
    args = ap.parse_args(argv)

    if (args.history_rows is None) != (args.history_out is None):
        ap.error("--history-rows and --history-out go together")
    if args.history_rows is not None:
        if args.history_rows < 1:
            ap.error("--history-rows must be at least 1")
        os.makedirs(os.path.dirname(args.history_out) or ".", exist_ok=True)
        write_csv(args.history_out, bulk_history(args.history_rows), HISTORY_FIELDS)
        return 0
    if args.shifted_batch:
        os.makedirs(os.path.dirname(args.shifted_batch) or ".", exist_ok=True)
        write_csv(args.shifted_batch, shifted_batch(SHIFT_SEED))
        return 0
    train, test = generate(args.seed)
    last = dt.datetime.strptime(train[-1]["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    train.extend(out_of_scope_rows(len(train) + 1, last))
    os.makedirs(args.out_dir, exist_ok=True)
    write_csv(os.path.join(args.out_dir, "tickets.csv"), train)
    write_csv(os.path.join(args.out_dir, "tickets_test.csv"), test)
    write_csv(os.path.join(args.out_dir, "history.csv"), history(train, test), HISTORY_FIELDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
