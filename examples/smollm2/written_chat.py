"""Team-written chat prompts: explain, compare, advise, plan, list, debate, role-play, classify, reason."""

from __future__ import annotations

import random

from prompt_parts import AUDIENCES, NAMES, answer_style, capitalise, join_items, pick, pick_some

CONCEPTS = (
    "photosynthesis",
    "inflation",
    "compound interest",
    "black holes",
    "the water cycle",
    "vaccines",
    "plate tectonics",
    "supply and demand",
    "machine learning",
    "the greenhouse effect",
    "DNA replication",
    "blockchain",
    "the immune system",
    "opportunity cost",
    "quantum entanglement",
    "natural selection",
    "the stock market",
    "electric cars",
    "public-key cryptography",
    "the French Revolution",
    "the Silk Road",
    "circadian rhythms",
    "recycling",
    "the Internet",
    "nuclear fusion",
    "antibiotic resistance",
    "tides",
    "credit scores",
    "the placebo effect",
    "democracy",
    "the Renaissance",
    "solar panels",
    "earthquakes",
    "cloud computing",
    "the scientific method",
    "gravity",
    "memory and sleep",
    "minimum wage",
    "coral reefs",
    "the printing press",
    "search engines",
    "interest rates",
    "rainbows",
    "the Big Bang",
    "habit formation",
    "electric circuits",
    "GPS",
    "sound waves",
    "fermentation",
    "the Cold War",
    "index funds",
    "volcanoes",
    "the ozone layer",
    "cognitive biases",
    "language learning",
    "carbon footprints",
    "antibodies",
)
EXPLAIN_TEMPLATES = (
    "Explain {concept} to {audience}.",
    "Can you explain how {concept} works?",
    "What is {concept}, and why does it matter?",
    "I keep hearing about {concept}. What is it in simple terms?",
    "Give me a clear explanation of {concept}, suitable for {audience}.",
    "How would you describe {concept} using an everyday analogy?",
    "What are the most common misconceptions about {concept}?",
    "Teach me the basics of {concept} in five short steps.",
)
COMPARISONS = (
    ("renting", "buying a home"),
    ("cats", "dogs as pets"),
    ("tea", "coffee"),
    ("trains", "planes for travel in Europe"),
    ("a Roth IRA", "a traditional IRA"),
    ("weather", "climate"),
    ("viruses", "bacteria"),
    ("stocks", "bonds"),
    ("e-books", "printed books"),
    ("running", "swimming for fitness"),
    ("socialism", "capitalism"),
    ("introverts", "extroverts"),
    ("leasing", "buying a car"),
    ("Python", "JavaScript for a first language"),
    ("working from home", "working in an office"),
    ("the Greek", "the Roman gods"),
    ("mitosis", "meiosis"),
    ("solar", "wind power"),
    ("a university degree", "an apprenticeship"),
    ("baking soda", "baking powder"),
    ("the violin", "the viola"),
    ("crocodiles", "alligators"),
    ("a credit card", "a debit card"),
    ("hurricanes", "tornadoes"),
    ("fiction", "non-fiction for personal growth"),
    ("LED", "incandescent bulbs"),
    ("aerobic", "anaerobic exercise"),
    ("a sole proprietorship", "a limited company"),
    ("frogs", "toads"),
)
COMPARE_TEMPLATES = (
    "What are the main differences between {first} and {second}?",
    "Compare {first} and {second}.",
    "{First} or {second}: what are the pros and cons of each?",
    "How do {first} and {second} differ, and when would you choose one over the other?",
    "Give me a side-by-side comparison of {first} and {second}.",
)
CONTEXTS = (
    "I'm a university student on a tight budget",
    "I work night shifts",
    "I have two young kids",
    "I just moved to a new city",
    "I'm starting my first full-time job",
    "I'm retired",
    "I run a small bakery",
    "I'm learning to code in my spare time",
    "I live in a small apartment",
    "I travel a lot for work",
    "I'm recovering from a knee injury",
    "I'm a new manager of a team of six",
    "I'm preparing for exams",
)
GOALS = (
    "sleep better",
    "stop procrastinating",
    "save more money each month",
    "make new friends",
    "eat healthier",
    "get more exercise",
    "read more books",
    "reduce stress",
    "learn a new language",
    "stay organised",
    "prepare for a job interview",
    "ask for a raise",
    "keep my houseplants alive",
    "spend less time on my phone",
    "cook more at home",
    "run my first 5k",
    "improve my public speaking",
    "give useful feedback",
    "negotiate rent with my landlord",
    "build a morning routine",
    "write a budget",
    "handle a difficult coworker",
)
ADVICE_TEMPLATES = (
    "{context}. What are some practical ways to {goal}?",
    "{context} and I want to {goal}. Where should I start?",
    "Any tips on how to {goal}? {context}.",
    "How can I {goal}? For context, {lower_context}.",
    "{context}. Give me a simple weekly plan to {goal}.",
)
PHENOMENA = (
    "the sky look blue",
    "leaves change colour in autumn",
    "cats purr",
    "we dream",
    "bread rise",
    "ice float on water",
    "the moon have phases",
    "we get goosebumps",
    "onions make us cry",
    "birds migrate",
    "some people get motion sickness",
    "metal feel colder than wood at the same temperature",
    "we yawn",
    "stars twinkle",
    "the ocean taste salty",
    "popcorn pop",
    "we have fingerprints",
    "prices go up over time",
    "planes leave white trails in the sky",
    "old books smell the way they do",
    "soap remove grease",
)
LIST_SUBJECTS = (
    "hobbies that cost almost nothing",
    "books about the history of science",
    "board games for a family night",
    "ways to reduce food waste at home",
    "questions to ask at the end of a job interview",
    "healthy breakfast ideas",
    "ways to practise mindfulness during a workday",
    "houseplants that are hard to kill",
    "skills every adult should learn",
    "icebreakers for a team meeting",
    "rainy-day activities for kids",
    "habits of effective learners",
    "common mistakes first-time home buyers make",
    "ways to make a small room feel bigger",
    "podcast topic ideas",
    "things to check before buying a used car",
    "ways to be a better listener",
    "free ways to learn statistics",
)
CITIES = (
    "Lisbon",
    "Kyoto",
    "Mexico City",
    "Edinburgh",
    "Cape Town",
    "Vancouver",
    "Istanbul",
    "Hanoi",
    "Buenos Aires",
    "Prague",
    "Marrakesh",
    "Seoul",
    "Copenhagen",
    "Lima",
    "Melbourne",
    "Montreal",
    "Athens",
    "Singapore",
)
INTERESTS = ("food", "history", "museums", "hiking", "architecture", "nightlife", "markets", "photography", "music")
SKILLS = (
    "Spanish",
    "the guitar",
    "data analysis with SQL",
    "watercolour painting",
    "chess",
    "touch typing",
    "public speaking",
    "basic statistics",
    "Python programming",
    "bread baking",
    "photography",
    "sign language",
)
ISSUES = (
    "a four-day work week",
    "banning phones in schools",
    "universal basic income",
    "nuclear power",
    "self-driving cars on public roads",
    "homework for primary-school children",
    "a tax on sugary drinks",
    "remote work becoming the norm",
    "space exploration funding",
    "lowering the voting age to 16",
    "school uniforms",
    "congestion charges in city centres",
    "standardised testing",
    "zoos",
)
ROLES = (
    ("a tour guide in ancient Rome", "Describe what I am seeing as we walk through the Forum."),
    ("a career coach", "I'm thinking of leaving accounting to become a teacher. Ask me three questions first."),
    ("a medieval blacksmith", "Explain to an apprentice how you make a sword."),
    ("a travel agent", "Help me choose between a beach holiday and a city break."),
    ("Sherlock Holmes", "Deduce what you can about me from the fact that I have ink on my left hand."),
    ("a museum curator", "Introduce the new dinosaur exhibit to a school group."),
    ("a personal trainer", "Design my first workout; I can only train twice a week."),
    ("a chef", "Tell me how to rescue a soup that is too salty."),
    ("an astronaut on the International Space Station", "Describe a normal morning."),
    ("a job interviewer for a junior data analyst role", "Start the interview."),
    ("a librarian", "Recommend something for a reader who loved science fiction but wants to try history."),
    ("a ship's captain in a storm", "Give orders to your crew."),
)
CLASSIFICATION_SETS = (
    (
        "mammal, bird, reptile or fish",
        (
            "salmon",
            "eagle",
            "gecko",
            "dolphin",
            "penguin",
            "cobra",
            "bat",
            "shark",
            "tortoise",
            "owl",
            "whale",
            "trout",
        ),
    ),
    (
        "fruit or vegetable",
        (
            "carrot",
            "mango",
            "spinach",
            "pear",
            "broccoli",
            "plum",
            "cucumber",
            "kiwi",
            "onion",
            "cherry",
            "leek",
            "papaya",
        ),
    ),
    (
        "renewable or non-renewable energy",
        ("coal", "solar", "natural gas", "wind", "geothermal", "oil", "hydropower", "uranium", "biomass", "tidal"),
    ),
    (
        "noun, verb or adjective",
        ("run", "happy", "river", "jump", "bright", "teacher", "sing", "ancient", "idea", "build", "quiet", "forest"),
    ),
    (
        "a need or a want",
        (
            "rent",
            "a new phone",
            "groceries",
            "concert tickets",
            "medicine",
            "a designer bag",
            "electricity",
            "a gaming console",
            "bus fare",
            "a holiday",
        ),
    ),
    (
        "solid, liquid or gas at room temperature",
        ("iron", "oxygen", "mercury", "salt", "helium", "olive oil", "wax", "carbon dioxide", "water", "gold"),
    ),
    (
        "positive, negative or neutral in sentiment",
        (
            "The delivery was fast and the box was intact.",
            "It broke after two days.",
            "The store opens at nine.",
            "Best purchase I've made all year!",
            "The manual is twenty pages long.",
            "Customer service never replied.",
        ),
    ),
)
PUZZLE_RELATIONS = ("taller than", "older than", "faster than", "richer than")


def explain(rng: random.Random) -> str:
    text = pick(rng, EXPLAIN_TEMPLATES).format(concept=pick(rng, CONCEPTS), audience=pick(rng, AUDIENCES))
    return text + answer_style(rng)


def compare(rng: random.Random) -> str:
    first, second = pick(rng, COMPARISONS)
    template = pick(rng, COMPARE_TEMPLATES)
    return template.format(first=first, second=second, First=capitalise(first)) + answer_style(rng)


def advise(rng: random.Random) -> str:
    context = pick(rng, CONTEXTS)
    template = pick(rng, ADVICE_TEMPLATES)
    return template.format(context=context, lower_context=context[0].lower() + context[1:], goal=pick(rng, GOALS))


def why(rng: random.Random) -> str:
    phenomenon = pick(rng, PHENOMENA)
    subject = phenomenon.split()[0]
    if rng.random() < 0.3:
        object_form = "us" + phenomenon[2:] if subject == "we" else phenomenon
        return f"What makes {object_form}?" + answer_style(rng)
    plural = subject in ("we", "leaves", "cats", "birds", "stars", "prices", "planes", "some", "old")
    return f"Why {'do' if plural else 'does'} {phenomenon}?" + answer_style(rng)


def make_list(rng: random.Random) -> str:
    count = pick(rng, (3, 5, 7, 10))
    subject = pick(rng, LIST_SUBJECTS)
    template = pick(
        rng,
        ("List {count} {subject}.", "What are {count} {subject}?", "Give me {count} {subject}, with one line on each."),
    )
    return template.format(count=count, subject=subject)


def plan(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        days, city = pick(rng, (2, 3, 4, 5)), pick(rng, CITIES)
        interests = join_items(pick_some(rng, INTERESTS, 2))
        budget = pick(rng, ("a low", "a moderate", "a generous"))
        return f"Plan a {days}-day trip to {city} for someone interested in {interests}, on {budget} budget."
    if kind == 1:
        weeks, skill, hours = pick(rng, (4, 6, 8, 12)), pick(rng, SKILLS), pick(rng, (2, 3, 5, 7))
        return f"Make a {weeks}-week plan to learn {skill} with about {hours} hours a week. I am a beginner."
    guests = pick(rng, (6, 12, 20, 40))
    event = pick(rng, ("a birthday party", "a team offsite", "a picnic", "a book club launch", "a charity bake sale"))
    return f"Help me organise {event} for {guests} people. What should I do in the month before, week by week?"


def debate(rng: random.Random) -> str:
    issue = pick(rng, ISSUES)
    template = pick(
        rng,
        (
            "What are the strongest arguments for and against {issue}?",
            "Should we adopt {issue}? Give both sides before your own view.",
            "Summarise the debate around {issue} in a balanced way.",
            "Write a short for-and-against list about {issue}.",
        ),
    )
    return template.format(issue=issue)


def role_play(rng: random.Random) -> str:
    role, request = pick(rng, ROLES)
    opener = pick(
        rng, ("Pretend you are {role}.", "Act as {role}.", "You are {role}.", "Let's role-play: you are {role}.")
    )
    return f"{opener.format(role=role)} {request}"


def classify(rng: random.Random) -> str:
    scheme, items = pick(rng, CLASSIFICATION_SETS)
    chosen = pick_some(rng, items, min(len(items), rng.randint(4, 7)))
    listing = "\n".join(f"- {item}" for item in chosen)
    return f"Classify each item as {scheme}:\n{listing}"


def ordering_puzzle(rng: random.Random) -> str:
    people = pick_some(rng, NAMES, rng.randint(3, 5))
    relation = pick(rng, PUZZLE_RELATIONS)
    facts = [f"{people[index]} is {relation} {people[index + 1]}." for index in range(len(people) - 1)]
    rng.shuffle(facts)
    question = pick(
        rng, ("Who is the {superlative}?", "Put them in order, from most to least.", "Is {first} {relation} {last}?")
    )
    superlative = {
        "taller than": "tallest",
        "older than": "oldest",
        "faster than": "fastest",
        "richer than": "richest",
    }[relation]
    question = question.format(superlative=superlative, first=people[-1], last=people[0], relation=relation)
    return f"{' '.join(facts)} {question} Explain how you worked it out."


def calendar_puzzle(rng: random.Random) -> str:
    days = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    start, offset = pick(rng, days), rng.randint(3, 400)
    if rng.random() < 0.5:
        return f"If today is {start}, what day of the week was it {offset} days ago?"
    return f"If today is {start}, what day of the week will it be in {offset} days? Show the calculation."


REQUESTS = (
    (
        "I'm cooking dinner for friends this Saturday",
        (
            "one guest is vegan",
            "another can't eat gluten",
            "I have about two hours",
            "my budget is around $40",
            "I only have one oven",
        ),
    ),
    (
        "I want to start exercising again",
        (
            "I haven't trained in five years",
            "my knees hurt on hard surfaces",
            "I can spare 30 minutes a day",
            "I get bored easily",
            "there's no gym nearby",
        ),
    ),
    (
        "My team is moving to a new project-tracking tool",
        (
            "half of them dislike change",
            "we have 200 open tasks to migrate",
            "the switch must happen within a month",
            "training time is limited",
        ),
    ),
    (
        "I need to choose a laptop for university",
        (
            "I study architecture",
            "my budget is $1,200",
            "I carry it all day",
            "I sometimes edit video",
            "battery life matters",
        ),
    ),
    (
        "We're adopting a rescue dog",
        ("we live in a flat", "we both work four days a week", "we have a cat", "it's our first dog"),
    ),
    (
        "I want to write a novel this year",
        (
            "I have a full-time job",
            "I've never finished a long project",
            "I write best in the mornings",
            "I want a first draft by December",
        ),
    ),
)


def constrained_request(rng: random.Random) -> str:
    situation, constraints = pick(rng, REQUESTS)
    chosen = pick_some(rng, constraints, rng.randint(2, len(constraints)))
    listing = "\n".join(f"- {constraint}" for constraint in chosen)
    ask = pick(
        rng,
        (
            "What do you suggest?",
            "Make me a plan.",
            "What are my best options, and what would you pick?",
            "Walk me through how to decide.",
        ),
    )
    return f"{situation}. A few things to keep in mind:\n{listing}\n{ask}"


FAMILIES = (
    constrained_request,
    explain,
    compare,
    advise,
    why,
    make_list,
    plan,
    debate,
    role_play,
    classify,
    ordering_puzzle,
    calendar_puzzle,
)
