"""Team-written writing prompts: emails, stories, poems, summaries, rewrites, translations, copy, edits."""

from __future__ import annotations

import random

from prompt_parts import NAMES, join_items, pick, pick_some

EMAIL_PURPOSES = (
    "asking for a deadline extension on a report",
    "declining a meeting invitation politely",
    "following up after a job interview",
    "requesting a refund for a damaged order",
    "introducing yourself to a new team",
    "asking a professor for a recommendation letter",
    "apologising for missing a call",
    "inviting colleagues to a farewell lunch",
    "reminding a client about an unpaid invoice",
    "proposing a new weekly meeting time",
    "thanking a mentor",
    "asking a landlord to fix a broken heater",
    "resigning from a part-time job",
    "requesting time off in August",
    "announcing a product launch to customers",
    "asking a neighbour to keep the noise down",
)
RECIPIENTS = (
    "my manager",
    "a client",
    "my team",
    "a recruiter",
    "my professor",
    "customer support",
    "a supplier",
    "my landlord",
)
TONES = ("formal", "friendly", "warm but professional", "brief and direct", "apologetic", "enthusiastic")
GENRES = (
    "science-fiction",
    "mystery",
    "fantasy",
    "comedy",
    "ghost",
    "adventure",
    "fairy-tale",
    "historical",
    "slice-of-life",
)
PROTAGONISTS = (
    "a retired detective",
    "a shy robot",
    "a lighthouse keeper",
    "a girl who can talk to birds",
    "a clumsy wizard",
    "an ambitious chef",
    "a lost astronaut",
    "a grumpy cat",
    "a time-travelling librarian",
    "a young inventor",
    "a street musician",
    "the last dragon",
    "a nervous substitute teacher",
    "twin sisters who swap places",
)
SETTINGS = (
    "a floating city",
    "a small fishing village",
    "a train stuck in the snow",
    "a museum at night",
    "Mars in 2150",
    "a desert market",
    "a haunted bakery",
    "an underwater research station",
    "a medieval castle",
    "a busy hospital",
)
STORY_TWISTS = (
    "",
    "",
    " The ending should surprise the reader.",
    " Tell it in the first person.",
    " Include a line of dialogue in every paragraph.",
    " It must end with the word 'home'.",
    " Tell it in exactly five sentences.",
    " Make it suitable for young children.",
)
POEM_FORMS = (
    "a haiku",
    "a limerick",
    "a sonnet",
    "a short free-verse poem",
    "a rhyming poem of four stanzas",
    "an acrostic poem on the word {word}",
    "a ballad",
)
POEM_SUBJECTS = (
    "the first snow of winter",
    "a cup of morning coffee",
    "the ocean at night",
    "moving to a new city",
    "an old bicycle",
    "friendship",
    "a thunderstorm",
    "learning to code",
    "autumn leaves",
    "a forgotten library",
    "the moon",
    "city traffic",
    "a grandmother's kitchen",
    "the last day of school",
    "a lighthouse",
    "a garden in spring",
)
PLAIN_SENTENCES = (
    "we need to finish the project soon because the client is waiting",
    "the meeting was long and nobody agreed on anything",
    "our new app helps people track how much water they drink",
    "the store will be closed on Monday for repairs",
    "I think the plan is good but it costs too much",
    "the results of the experiment were not what we expected",
    "please send me the files before you leave today",
    "the city is building a new park next to the river",
    "the team worked hard and sales went up a lot this year",
    "you forgot to sign the form so we can't process it",
    "the weather ruined our picnic but we still had fun",
    "this laptop is fast but the battery does not last long",
)
REWRITE_STYLES = (
    "more formal",
    "more casual",
    "for a ten-year-old",
    "in the passive voice",
    "more concise",
    "more persuasive",
    "in the style of a news headline",
    "as a polite request",
    "with more vivid language",
    "in the style of Shakespeare",
)
TRANSLATION_SENTENCES = (
    "Where is the nearest train station?",
    "I would like a table for two, please.",
    "The museum opens at ten o'clock.",
    "Could you speak a little more slowly?",
    "My sister works as a nurse in a big hospital.",
    "It is going to rain tomorrow.",
    "How much does this jacket cost?",
    "We have been learning the language for two years.",
    "Thank you for your help!",
    "The meeting has been moved to Thursday afternoon.",
    "I am allergic to peanuts.",
    "Happy birthday, I hope you have a wonderful day.",
)
TARGET_LANGUAGES = ("French", "Spanish", "German", "Italian", "Portuguese", "Dutch", "Chinese", "Japanese")
PRODUCTS = (
    "a reusable water bottle that tracks your drinking",
    "noise-cancelling headphones for children",
    "a solar-powered phone charger",
    "a plant-based protein bar",
    "a smart doorbell",
    "a foldable electric scooter",
    "a language-learning board game",
    "a handmade ceramic mug",
    "an app that plans weekly meals",
    "ergonomic office chairs",
    "a bicycle repair kit",
)
MEETING_ITEMS = (
    "launch date moved to {month} {day}",
    "budget for ads raised by {amount}%",
    "{name} to draft the press release",
    "website redesign still waiting on feedback",
    "customer survey shows {amount}% want a dark mode",
    "{name} will contact the new supplier",
    "hiring two interns for the summer",
    "next review meeting on {month} {day}",
    "server costs up {amount}% since last quarter",
    "{name} to prepare the training slides",
)
MONTHS = ("March", "April", "May", "June", "September", "October", "November")
CLASSIC_BOOKS = (
    "Pride and Prejudice",
    "Moby-Dick",
    "Frankenstein",
    "The Odyssey",
    "Great Expectations",
    "Dracula",
    "Jane Eyre",
    "The Adventures of Tom Sawyer",
    "Alice's Adventures in Wonderland",
    "A Christmas Carol",
    "The Time Machine",
    "Hamlet",
)
GRAMMAR_ERRORS = (
    "their going to the beach tomorow, weather or not it rains.",
    "me and him was late becuase the bus brake down.",
    "the list of items are on the desk, i think its yours.",
    "She dont like when people interupts her.",
    "Every students need to bring there own lunch.",
    "we was suppose to meet at noon but nobody come.",
    "The informations you gave me was very usefull.",
    "Him and his brother has went to the store alot.",
)
OCCASIONS = (
    "a best friend's wedding",
    "a colleague's retirement",
    "a school graduation",
    "a grandparent's 80th birthday",
    "the opening of a community garden",
)


def email(rng: random.Random) -> str:
    purpose, recipient, tone = pick(rng, EMAIL_PURPOSES), pick(rng, RECIPIENTS), pick(rng, TONES)
    template = pick(
        rng,
        (
            "Write a {tone} email to {recipient} {purpose}.",
            "Draft an email {purpose}. It goes to {recipient}; keep the tone {tone}.",
            "Help me write a {tone} message to {recipient} {purpose}.",
        ),
    )
    return template.format(tone=tone, recipient=recipient, purpose=purpose)


def story(rng: random.Random) -> str:
    genre, hero, place = pick(rng, GENRES), pick(rng, PROTAGONISTS), pick(rng, SETTINGS)
    length = pick(rng, ("a very short", "a 200-word", "a one-page", "a three-paragraph"))
    return f"Write {length} {genre} story about {hero} in {place}.{pick(rng, STORY_TWISTS)}"


def poem(rng: random.Random) -> str:
    subject = pick(rng, POEM_SUBJECTS)
    form = pick(rng, POEM_FORMS).format(word=pick(rng, ("RAIN", "HOPE", "OCEAN", "SPRING", "FRIEND")))
    return pick(
        rng,
        (
            f"Write {form} about {subject}.",
            f"Compose {form} on the theme of {subject}.",
            f"Can you write me {form} about {subject}?",
        ),
    )


def rewrite(rng: random.Random) -> str:
    sentence = pick(rng, PLAIN_SENTENCES)
    sentence = sentence[0].upper() + sentence[1:] + "."
    style = pick(rng, REWRITE_STYLES)
    return pick(
        rng,
        (
            f'Rewrite this sentence {style}: "{sentence}"',
            f"Make the following {style}.\n\n{sentence}",
            f'How would you say "{sentence}" {style}?',
        ),
    )


def translate(rng: random.Random) -> str:
    sentences = pick_some(rng, TRANSLATION_SENTENCES, rng.randint(1, 3))
    language = pick(rng, TARGET_LANGUAGES)
    return f"Translate into {language}:\n" + "\n".join(sentences)


def product_copy(rng: random.Random) -> str:
    product = pick(rng, PRODUCTS)
    kind = pick(
        rng,
        (
            "a product description",
            "three catchy slogans",
            "a short Instagram caption",
            "a 30-second radio ad",
            "an FAQ section",
        ),
    )
    return f"Write {kind} for {product}."


def summarise_notes(rng: random.Random) -> str:
    items = pick_some(rng, MEETING_ITEMS, rng.randint(4, 7))
    lines = [
        "- "
        + item.format(month=pick(rng, MONTHS), day=rng.randint(1, 28), amount=rng.randint(5, 60), name=pick(rng, NAMES))
        for item in items
    ]
    ask = pick(
        rng,
        (
            "Summarise these meeting notes in three sentences.",
            "Turn these notes into a list of action items with owners.",
            "Write a short status update email from these notes.",
        ),
    )
    return f"{ask}\n\n" + "\n".join(lines)


def summarise_book(rng: random.Random) -> str:
    book = pick(rng, CLASSIC_BOOKS)
    return pick(
        rng,
        (
            f"Summarise the plot of {book} in one paragraph.",
            f"What are the main themes of {book}?",
            f"Describe the main characters of {book} and how they change.",
        ),
    )


def fix_grammar(rng: random.Random) -> str:
    sentences = pick_some(rng, GRAMMAR_ERRORS, rng.randint(1, 2))
    return "Correct the spelling and grammar, and list what you changed:\n\n" + " ".join(sentences)


def speech(rng: random.Random) -> str:
    occasion, minutes = pick(rng, OCCASIONS), pick(rng, (1, 2, 3))
    return (
        f"Write a {minutes}-minute speech for {occasion}. Make it "
        f"{pick(rng, ('funny', 'heartfelt', 'funny and heartfelt', 'short and sincere'))}."
    )


def outline(rng: random.Random) -> str:
    topic = pick(
        rng,
        (
            "remote work",
            "learning a musical instrument as an adult",
            "urban gardening",
            "the history of tea",
            "personal finance for students",
            "the future of libraries",
        ),
    )
    kind = pick(
        rng, ("a blog post", "a persuasive essay", "a five-minute presentation", "a podcast episode", "a newsletter")
    )
    return f"Create an outline for {kind} about {topic}, with a title and {rng.randint(3, 6)} sections."


def dialogue(rng: random.Random) -> str:
    first, second = pick_some(rng, NAMES, 2)
    situation = pick(
        rng,
        (
            "are stuck in a lift",
            "disagree about where to go on holiday",
            "meet again after twenty years",
            "are planning a surprise party",
            "find a mysterious map",
        ),
    )
    return f"Write a short dialogue in which {first} and {second} {situation}."


def cover_letter(rng: random.Random) -> str:
    role = pick(
        rng,
        (
            "junior data analyst",
            "primary-school teacher",
            "barista",
            "marketing assistant",
            "nurse",
            "UX designer",
            "warehouse supervisor",
        ),
    )
    skills = join_items(
        pick_some(
            rng,
            (
                "teamwork",
                "Excel",
                "customer service",
                "public speaking",
                "Python",
                "scheduling",
                "first aid",
                "design tools",
            ),
            2,
        )
    )
    return (
        f"Write a cover letter for a {role} position. I have {rng.randint(1, 8)} years of experience and I'm good "
        f"at {skills}."
    )


COMPANIES = (
    "Northwind Traders",
    "Bluebird Bikes",
    "Cedar & Co.",
    "Orbit Labs",
    "Harbour Foods",
    "Pixel Forge",
    "Greenleaf Energy",
)


def extract(rng: random.Random) -> str:
    company, person = pick(rng, COMPANIES), pick(rng, NAMES)
    text = (
        f"Hi {person}, following our call on {pick(rng, MONTHS)} {rng.randint(1, 28)}, {company} confirms an order of "
        f"{rng.randint(5, 500)} units at ${rng.randint(2, 90)}.{rng.randint(0, 99):02d} each. Delivery is planned for "
        f"{pick(rng, MONTHS)} {rng.randint(1, 28)} to our "
        f"{pick(rng, ('Leeds', 'Porto', 'Austin', 'Osaka', 'Lyon'))} warehouse. "
        f"Payment is due within {pick(rng, (14, 30, 45, 60))} days. Contact {pick(rng, NAMES)} with any questions."
    )
    fields = pick(
        rng,
        (
            "as JSON with keys company, quantity, unit_price, delivery_date and payment_terms",
            "as a table",
            "as a bulleted list of every date, amount and name",
        ),
    )
    return f"Extract the key details from this message {fields}:\n\n{text}"


def critique(rng: random.Random) -> str:
    sentences = [
        sentence[0].upper() + sentence[1:] + "." for sentence in pick_some(rng, PLAIN_SENTENCES, rng.randint(3, 5))
    ]
    ask = pick(
        rng,
        (
            "Give me feedback on this paragraph: clarity, flow and tone.",
            "Edit this paragraph so it reads smoothly, then explain the main changes.",
            "Suggest a title for this text and rewrite it as a short announcement.",
        ),
    )
    return f"{ask}\n\n{' '.join(sentences)}"


FAMILIES = (
    extract,
    critique,
    email,
    story,
    poem,
    rewrite,
    translate,
    product_copy,
    summarise_notes,
    summarise_book,
    fix_grammar,
    speech,
    outline,
    dialogue,
    cover_letter,
)
