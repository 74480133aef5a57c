"""Team-written math prompts: word problems with generated numbers, algebra, calculus, probability, proofs.

Numbers are drawn so that answers are whole or short decimals; the prompt never states the
answer (the target writes it when ``eagle3 sample`` regenerates the assistant turn).
"""

from __future__ import annotations

import random

from prompt_parts import NAMES, pick, pick_some

ASKS = (
    "",
    " Show your work.",
    " Solve it step by step.",
    " Explain each step.",
    " Give the final answer on its own line.",
    " Think it through before answering.",
)
ITEMS = (
    ("notebooks", "pens"),
    ("apples", "oranges"),
    ("tickets", "programmes"),
    ("sandwiches", "juices"),
    ("plants", "pots"),
    ("shirts", "ties"),
    ("paintbrushes", "canvases"),
    ("muffins", "coffees"),
    ("bolts", "washers"),
    ("comics", "posters"),
    ("scarves", "hats"),
    ("batteries", "torches"),
)
VEHICLES = ("a cyclist", "a train", "a bus", "a runner", "a delivery van", "a ferry", "a hiker")
PROOFS = (
    "Prove that the sum of two odd numbers is even.",
    "Prove that there are infinitely many prime numbers.",
    "Show that the square root of 2 is irrational.",
    "Prove that the angles of a triangle add up to 180 degrees.",
    "Prove that n^3 - n is divisible by 6 for every integer n.",
    "Prove by induction that 1 + 2 + ... + n = n(n + 1)/2.",
    "Show that every integer greater than 1 has a prime factor.",
    "Prove that the product of two negative numbers is positive.",
    "Explain why dividing by zero is undefined.",
    "Why is 0.999... equal to 1?",
    "Explain why a^0 = 1 for a non-zero a.",
    "Explain what a derivative measures, with an example.",
    "What is the difference between a permutation and a combination?",
)


def ask(rng: random.Random) -> str:
    return pick(rng, ASKS)


def shopping(rng: random.Random) -> str:
    name, (first, second) = pick(rng, NAMES), pick(rng, ITEMS)
    count_a, count_b = rng.randint(2, 9), rng.randint(2, 6)
    price_a, price_b = rng.randint(1, 12) + pick(rng, (0, 0.5, 0.25)), rng.randint(2, 20)
    bill = pick(rng, (50, 100, 200))
    return (
        f"{name} buys {count_a} {first} at ${price_a:g} each and {count_b} {second} at ${price_b} each, "
        f"paying with a ${bill} note. How much change should {name} get?{ask(rng)}"
    )


def travel(rng: random.Random) -> str:
    vehicle, speed, hours = pick(rng, VEHICLES), rng.randint(4, 120), rng.randint(2, 6)
    kind = rng.randrange(3)
    if kind == 0:
        return (
            f"{vehicle.capitalize()} travels at {speed} km/h for {hours} hours and {rng.choice((15, 30, 45))} "
            f"minutes. How far does it go?{ask(rng)}"
        )
    if kind == 1:
        return (
            f"{vehicle.capitalize()} covers {speed * hours} km in {hours} hours. At the same speed, how long would "
            f"{speed * (hours + 3)} km take?{ask(rng)}"
        )
    faster = speed + rng.randint(5, 30)
    return (
        f"Two towns are {(speed + faster) * hours} km apart. Two cars leave at the same time towards each other, "
        f"one at {speed} km/h and the other at {faster} km/h. After how many hours do they meet?{ask(rng)}"
    )


def work_rate(rng: random.Random) -> str:
    first, second = rng.randint(2, 12), rng.randint(3, 15)
    if rng.random() < 0.5:
        return (
            f"One pipe fills a tank in {first} hours and another fills it in {second} hours. How long do both "
            f"together take?{ask(rng)}"
        )
    names = pick_some(rng, NAMES, 2)
    return (
        f"{names[0]} can paint a fence in {first} hours; {names[1]} needs {second} hours. Working together, how "
        f"long will it take them?{ask(rng)}"
    )


def percent(rng: random.Random) -> str:
    price, rate = rng.randint(20, 900), pick(rng, (5, 10, 12, 15, 20, 25, 30, 40))
    kind = rng.randrange(4)
    if kind == 0:
        return (
            f"A jacket costs ${price}. It is discounted by {rate}%, and then sales tax of {pick(rng, (5, 8, 10))}% "
            f"is added. What is the final price?{ask(rng)}"
        )
    if kind == 1:
        return (
            f"A town's population grew from {price * 100} to {price * (100 + rate)}. By what percentage did it "
            f"grow?{ask(rng)}"
        )
    if kind == 2:
        return f"What is {rate}% of {price}? And what number is {price} {rate}% of?"
    return (
        f"A restaurant bill is ${price / 4:.2f}. How much is a {pick(rng, (15, 18, 20))}% tip, and what is the total?"
    )


def interest(rng: random.Random) -> str:
    principal, rate, years = rng.randint(10, 200) * 50, pick(rng, (2, 3, 4, 5, 6, 8)), rng.randint(2, 10)
    if rng.random() < 0.5:
        return f"How much simple interest does ${principal} earn at {rate}% per year over {years} years?"
    period = pick(rng, ("yearly", "monthly"))
    return (
        f"If I invest ${principal} at {rate}% per year, compounded {period}, how much will I have after {years} "
        f"years?{ask(rng)}"
    )


def ages(rng: random.Random) -> str:
    older, younger = pick_some(rng, NAMES, 2)
    younger_age, years, multiple = rng.randint(2, 30), rng.randint(2, 12), rng.randint(2, 3)
    older_age = multiple * (younger_age + years) - years
    return (
        f"{older} is {older_age} years old and {younger} is {younger_age}. "
        f"In how many years will {older} be exactly {multiple} times as old as {younger}?{ask(rng)}"
    )


def ratio(rng: random.Random) -> str:
    names = pick_some(rng, NAMES, 3)
    parts = [rng.randint(1, 7) for _ in names]
    total = sum(parts) * rng.randint(5, 60)
    return (
        f"{names[0]}, {names[1]} and {names[2]} share ${total} in the ratio {':'.join(map(str, parts))}. How much "
        f"does each get?{ask(rng)}"
    )


def geometry(rng: random.Random) -> str:
    a, b, r = rng.randint(3, 30), rng.randint(3, 30), rng.randint(1, 15)
    return pick(
        rng,
        (
            f"A rectangular garden is {a} m by {b} m with a path 1 m wide around it. What is the area of the path?",
            f"What are the area and circumference of a circle with radius {r} cm?",
            f"A right triangle has legs of {a} and {b}. How long is the hypotenuse?",
            f"A box measures {a} cm by {b} cm by {r} cm. What is its volume and its surface area?",
            f"A cylinder has a radius of {r} cm and a height of {a} cm. How many litres of water does it hold?",
            f"How many {a} cm by {a} cm tiles are needed to cover a floor of {b} m by {r + 2} m?",
        ),
    )


def statistics(rng: random.Random) -> str:
    values = [rng.randint(1, 100) for _ in range(rng.randint(5, 9))]
    wanted = pick(
        rng,
        ("mean and median", "mean, median and mode", "range and standard deviation", "median and interquartile range"),
    )
    subject = pick(rng, ("test scores", "daily temperatures", "house prices in thousands", "minutes spent commuting"))
    return f"Here are some {subject}: {', '.join(map(str, values))}. Find the {wanted}."


def equations(rng: random.Random) -> str:
    x, y = rng.randint(-9, 12), rng.randint(-9, 12)
    a, b, c, d = (rng.randint(1, 9) for _ in range(4))
    kind = rng.randrange(3)
    if kind == 0:
        return f"Solve for x: {a}x + {b} = {a * x + b}."
    if kind == 1:
        return f"Solve the system: {a}x + {b}y = {a * x + b * y} and {c}x - {d}y = {c * x - d * y}.{ask(rng)}"
    root_1, root_2 = rng.randint(-8, 8), rng.randint(-8, 8)
    linear, constant = -(root_1 + root_2), root_1 * root_2
    polynomial = "x^2" + (f" {signed(linear)}x" if linear else "") + (f" {signed(constant)}" if constant else "")
    return f"Find the roots of {polynomial} = 0 and check them by substitution."


def ordinal(number: int) -> str:
    """``1st``, ``22nd``, ``13th``."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def signed(value: int) -> str:
    """``+ 3`` or ``- 3``, for writing polynomials."""
    return f"+ {value}" if value >= 0 else f"- {-value}"


def calculus(rng: random.Random) -> str:
    a, b, n = rng.randint(1, 9), rng.randint(1, 9), rng.randint(2, 5)
    function = pick(
        rng, (f"{a}x^{n} + {b}x", f"sin({a}x) * x", f"e^({a}x) / {b}", f"ln(x^2 + {a})", f"({a}x + {b})^{n}")
    )
    task = pick(rng, ("Differentiate", "Find the derivative of", "Integrate", "Find the antiderivative of"))
    return f"{task} f(x) = {function}.{ask(rng)}"


def probability(rng: random.Random) -> str:
    red, blue, green = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 6)
    draws = pick(rng, ("with replacement", "without replacement"))
    return pick(
        rng,
        (
            f"A bag holds {red} red, {blue} blue and {green} green marbles. Two are drawn {draws}. What is the "
            f"probability both are red?",
            f"I roll two dice. What is the probability the sum is {rng.randint(3, 11)}?",
            f"A coin is flipped {rng.randint(3, 8)} times. What is the probability of exactly {rng.randint(1, 3)} "
            f"heads?",
            f"In a class of {red + blue + 10} students, what is the chance that at least two share a birthday? "
            f"Estimate it.",
        ),
    )


def combinatorics(rng: random.Random) -> str:
    people, chosen = rng.randint(6, 15), rng.randint(2, 5)
    return pick(
        rng,
        (
            f"How many ways can a committee of {chosen} be chosen from {people} people?",
            f"In how many ways can {chosen} books be arranged on a shelf chosen from {people} different books?",
            f"How many different {chosen}-letter codes can be made from the letters A to {chr(64 + people)} if "
            f"letters can repeat?",
        ),
    )


def number_theory(rng: random.Random) -> str:
    a, b = rng.randint(12, 400), rng.randint(12, 400)
    return pick(
        rng,
        (
            f"Find the greatest common divisor and least common multiple of {a} and {b}.",
            f"What is the prime factorisation of {a * b}?",
            f"Is {a * 2 + 1} a prime number? Explain how you checked.",
            f"What is the remainder when {a}^{rng.randint(5, 50)} is divided by {rng.randint(3, 11)}?",
        ),
    )


def sequences(rng: random.Random) -> str:
    start, step, n = rng.randint(1, 20), rng.randint(2, 9), rng.randint(10, 40)
    if rng.random() < 0.5:
        terms = ", ".join(str(start + step * index) for index in range(4))
        return (
            f"The sequence {terms}, ... continues in the same way. What is the {ordinal(n)} term, and what is the "
            f"sum of the first {n} terms?"
        )
    terms = ", ".join(str(start * step**index) for index in range(4))
    return f"What is the next term of {terms}, ...? Give a formula for the n-th term."


def recipe(rng: random.Random) -> str:
    serves, wanted = rng.randint(2, 6), rng.randint(3, 12)
    flour, sugar = rng.randint(1, 4) * 50 + 100, pick(rng, ("3/4", "2/3", "1/2", "1 1/4"))
    return (
        f"A recipe for {serves} people uses {flour} g of flour, {sugar} cup of sugar and {rng.randint(2, 4)} eggs. "
        f"How much of each do I need for {wanted} people?"
    )


def clock(rng: random.Random) -> str:
    hour, minute = rng.randint(5, 22), pick(rng, (5, 10, 20, 35, 45, 50))
    duration_h, duration_m = rng.randint(1, 9), pick(rng, (15, 25, 40, 55))
    return (
        f"A train leaves at {hour:02d}:{minute:02d} and the journey takes {duration_h} hours {duration_m} minutes. "
        f"When does it arrive?"
    )


def units(rng: random.Random) -> str:
    value = rng.randint(2, 500)
    unit_from, unit_to = pick(
        rng,
        (
            ("miles", "kilometres"),
            ("pounds", "kilograms"),
            ("litres", "US gallons"),
            ("square feet", "square metres"),
            ("km/h", "metres per second"),
        ),
    )
    return f"Convert {value} {unit_from} to {unit_to}, and explain the conversion factor."


def proof(rng: random.Random) -> str:
    return pick(rng, PROOFS)


def multi_part(rng: random.Random) -> str:
    first, second = pick_some(rng, (shopping, percent, ratio, geometry, clock, recipe, travel), 2)
    return f"Answer both parts and label your answers.\n(a) {first(rng)}\n(b) {second(rng)}"


FAMILIES = (
    multi_part,
    shopping,
    travel,
    work_rate,
    percent,
    interest,
    ages,
    ratio,
    geometry,
    statistics,
    equations,
    equations,
    calculus,
    probability,
    combinatorics,
    number_theory,
    sequences,
    recipe,
    clock,
    units,
    proof,
)
