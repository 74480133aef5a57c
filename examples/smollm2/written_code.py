"""Team-written code prompts: write, explain, debug, test, translate, SQL, regex, shell, design."""

from __future__ import annotations

import random

from prompt_parts import pick, pick_some

LANGUAGES = (
    "Python",
    "Python",
    "Python",
    "JavaScript",
    "TypeScript",
    "Java",
    "C++",
    "Go",
    "Rust",
    "C#",
    "Ruby",
    "Kotlin",
)
CODE_TASKS = (
    "checks whether a string is a palindrome, ignoring case and spaces",
    "returns the n-th Fibonacci number",
    "counts how often each word appears in a text",
    "merges two sorted lists into one sorted list",
    "removes duplicates from a list while keeping the original order",
    "finds the second largest number in a list",
    "converts a Roman numeral to an integer",
    "checks whether two strings are anagrams",
    "flattens a nested list of arbitrary depth",
    "returns all prime numbers below n",
    "validates an email address with simple rules",
    "rotates a matrix by 90 degrees clockwise",
    "finds the longest common prefix of a list of strings",
    "groups a list of records by a given key",
    "computes the moving average of a list with a window size k",
    "parses a date string like 2024-03-15 and returns the weekday",
    "reverses the words in a sentence",
    "checks whether brackets in an expression are balanced",
    "returns the indices of two numbers that add up to a target",
    "converts a temperature between Celsius and Fahrenheit",
    "chunks a list into pieces of size n",
    "computes the greatest common divisor of two integers",
    "finds the first non-repeating character in a string",
    "implements binary search on a sorted array",
    "counts the vowels in a string",
    "generates all permutations of a string",
    "computes the edit distance between two strings",
    "returns the running total of a list of numbers",
    "converts a number to its binary representation without built-ins",
    "finds the most frequent element in a list",
    "checks whether a year is a leap year",
    "transposes a matrix given as a list of lists",
    "compresses a string like aaabcc into a3b1c2",
    "sorts a list of dictionaries by two keys",
    "detects a cycle in a linked list",
    "computes the depth of a binary tree",
    "implements an LRU cache with get and put",
    "finds all pairs in a list whose difference is k",
    "masks all but the last four digits of a card number",
    "splits a camelCase identifier into words",
)
CONSTRAINTS = (
    "",
    "",
    "",
    " Include type hints.",
    " Add a docstring and two example calls.",
    " Do not use any libraries.",
    " Aim for O(n) time.",
    " Handle empty input gracefully.",
    " Write it as a one-liner if that stays readable.",
    " Explain the algorithm after the code.",
    " Include a few unit tests.",
    " Use recursion.",
)
WRITE_TEMPLATES = (
    "Write a {language} function that {task}.{constraint}",
    "In {language}, how would I write a function that {task}?{constraint}",
    "Implement a function in {language} that {task}.{constraint}",
    "I need {language} code that {task}. Can you help?{constraint}",
    "Write a short {language} program that {task}, and show its output for a sample input.",
)
CONCEPTS = (
    "closures",
    "recursion",
    "generators",
    "decorators",
    "async/await",
    "pointers",
    "references versus values",
    "interfaces",
    "inheritance versus composition",
    "dependency injection",
    "immutability",
    "memoisation",
    "exceptions and error handling",
    "iterators",
    "lambda functions",
    "threads versus processes",
    "garbage collection",
    "big-O notation",
    "hash tables",
    "dynamic programming",
    "the call stack",
    "unit testing",
    "mocking in tests",
    "the difference between a list and a tuple",
    "type inference",
    "race conditions",
    "REST APIs",
    "event loops",
    "variable scope",
    "string formatting",
    "regular expressions",
    "pattern matching",
    "generics",
    "enums",
)
SQL_SCHEMAS = (
    (
        "employees(id, name, department_id, salary, hire_date) and departments(id, name)",
        (
            "lists each department with its average salary",
            "finds employees hired in the last 90 days",
            "returns the highest-paid employee in every department",
            "counts employees per department, including departments with none",
        ),
    ),
    (
        "orders(id, customer_id, created_at, total) and customers(id, name, country)",
        (
            "returns the top five customers by total spending",
            "shows monthly revenue for the current year",
            "finds customers who have never placed an order",
            "computes the average order value per country",
        ),
    ),
    (
        "students(id, name), courses(id, title) and enrolments(student_id, course_id, grade)",
        (
            "lists students enrolled in more than three courses",
            "finds the course with the highest average grade",
            "returns each student's best grade and the course it was in",
        ),
    ),
    (
        "page_views(user_id, url, viewed_at)",
        (
            "counts daily active users",
            "finds the five most viewed pages last week",
            "returns users who viewed the same page more than ten times in one day",
        ),
    ),
)
REGEX_TARGETS = (
    "a UK postcode",
    "a time in 24-hour HH:MM format",
    "a hexadecimal colour code like #1a2b3c",
    "an IPv4 address",
    "a US phone number with optional dashes",
    "a date in DD/MM/YYYY format",
    "a word that starts and ends with the same letter",
    "a positive or negative decimal number",
    "a hashtag in a tweet",
    "a semantic version number such as 1.4.2",
    "a string of exactly eight alphanumeric characters",
)
SHELL_TASKS = (
    ("bash", "find all files larger than 100 MB in my home folder"),
    ("bash", "rename every .jpeg file in a folder to .jpg"),
    ("bash", "count the lines in all Python files of a project"),
    ("bash", "show the ten largest folders on the disk"),
    ("git", "undo my last commit but keep the changes"),
    ("git", "move a commit to a different branch"),
    ("git", "see who last changed each line of a file"),
    ("git", "squash my last three commits into one"),
    ("docker", "remove all stopped containers and unused images"),
    ("docker", "open a shell inside a running container"),
    ("bash", "replace a word in every file of a folder"),
    ("bash", "run a command every five minutes"),
    ("git", "find which commit introduced a bug"),
    ("bash", "download a file and check its SHA-256 checksum"),
)
DESIGN_DOMAINS = (
    ("BankAccount", "deposits, withdrawals and a transaction history"),
    ("Library", "books, members and loans with due dates"),
    ("ParkingLot", "spaces of different sizes and tickets"),
    ("ShoppingCart", "items, quantities, discounts and a total"),
    ("TodoList", "tasks with priorities and due dates"),
    ("Inventory", "products, stock levels and reorder alerts"),
    ("Playlist", "songs, shuffling and repeat modes"),
    ("RateLimiter", "a fixed number of requests per user per minute"),
    ("ElevatorController", "floors, requests and the direction of travel"),
)
DATA_TASKS = (
    "read a CSV file and show the first rows",
    "drop rows with missing values in one column",
    "group sales by month and sum them",
    "merge two DataFrames on a customer id",
    "pivot a table of daily temperatures",
    "plot a histogram of ages",
    "find duplicate rows",
    "convert a column of strings to dates",
    "compute the correlation between two columns",
    "add a column with a running total",
)


def write_function(rng: random.Random) -> str:
    template = pick(rng, WRITE_TEMPLATES)
    return template.format(language=pick(rng, LANGUAGES), task=pick(rng, CODE_TASKS), constraint=pick(rng, CONSTRAINTS))


def explain_concept(rng: random.Random) -> str:
    concept, language = pick(rng, CONCEPTS), pick(rng, LANGUAGES)
    template = pick(
        rng,
        (
            "Explain {concept} in {language} with a short example.",
            "What are {concept}? Show me in {language}.",
            "When should I care about {concept}? Use {language} for any code.",
            "I'm confused about {concept}. Can you explain with a simple {language} example?",
        ),
    )
    return template.format(concept=concept, language=language)


def debug(rng: random.Random) -> str:
    return pick(rng, (_bug_range, _bug_default, _bug_mutation, _bug_compare, _bug_accumulate))(rng)


def _bug_range(rng: random.Random) -> str:
    name, values = pick(rng, ("total", "scores", "prices", "counts")), rng.sample(range(1, 60), rng.randint(3, 6))
    return (
        f"Why does this Python code not add up the last element?\n\n{name} = {values}\nresult = 0\n"
        f"for i in range(len({name}) - 1):\n    result += {name}[i]\nprint(result)"
    )


def _bug_default(rng: random.Random) -> str:
    item = pick(rng, ("task", "name", "score", "tag"))
    return (
        f"Calling this function twice gives a strange result. What is wrong and how do I fix it?\n\n"
        f"def add_{item}({item}, {item}s=[]):\n    {item}s.append({item})\n    return {item}s\n\n"
        f"print(add_{item}({rng.randint(1, 9)}))\nprint(add_{item}({rng.randint(10, 99)}))"
    )


def _bug_mutation(rng: random.Random) -> str:
    threshold = rng.randint(3, 20)
    values = sorted(rng.sample(range(1, 40), 6))
    return (
        f"I want to remove every number below {threshold}, but some remain. Why?\n\n"
        f"numbers = {values}\nfor n in numbers:\n    if n < {threshold}:\n        numbers.remove(n)\nprint(numbers)"
    )


def _bug_compare(rng: random.Random) -> str:
    limit = rng.randint(10, 100)
    return (
        "This JavaScript always prints 'equal'. What did I do wrong?\n\n"
        f"let count = {rng.randint(0, 9)};\nif (count = {limit}) {{\n  console.log('equal');\n}}"
    )


def _bug_accumulate(rng: random.Random) -> str:
    word = pick(rng, ("average", "mean"))
    values = rng.sample(range(1, 100), rng.randint(3, 5))
    return (
        f"My {word} function returns the wrong value. Find the bug.\n\n"
        f"def {word}(values):\n    total = 0\n    for v in values:\n        total = v\n    return total / "
        f"len(values)\n\n"
        f"print({word}({values}))"
    )


def write_tests(rng: random.Random) -> str:
    framework = pick(rng, ("pytest", "unittest", "Jest", "JUnit 5", "Go's testing package"))
    return f"Write unit tests with {framework} for a function that {pick(rng, CODE_TASKS)}. Cover edge cases."


def translate_code(rng: random.Random) -> str:
    target = pick(rng, ("JavaScript", "Go", "Rust", "Java", "C++", "Ruby"))
    name, factor = pick(rng, ("scale", "grow", "boost")), rng.randint(2, 9)
    snippet = (
        f"def {name}(items, limit):\n    result = []\n    for x in items:\n        if x * {factor} <= limit:\n"
        f"            result.append(x * {factor})\n    return result"
    )
    return f"Translate this Python function to {target}:\n\n{snippet}"


COMPLEXITY_SNIPPETS = (
    "for i in range(n):\n    for j in range(i, n):\n        total += i * j",
    "i = n\nwhile i > 1:\n    i //= 2\n    steps += 1",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)",
    "for i in range(n):\n    j = 1\n    while j < n:\n        j *= 2\n        count += 1",
    "seen = set()\nfor x in items:\n    if target - x in seen:\n        return True\n    seen.add(x)",
    "items.sort()\nfor x in queries:\n    position = bisect.bisect_left(items, x)",
    "for i in range(n):\n    for j in range(n):\n        for k in range(n):\n            c[i][j] += a[i][k] * b[k][j]",
    "def power_set(items):\n    if not items:\n        return [[]]\n    rest = power_set(items[1:])\n"
    "    return rest + [[items[0]] + s for s in rest]",
    "result = ''\nfor word in words:\n    result += word",
)


def complexity(rng: random.Random) -> str:
    ask = pick(
        rng,
        (
            "What is the time complexity of this code, and why?",
            "Give the big-O running time and memory use of this snippet.",
            "Can this be made faster? Start by analysing its complexity.",
        ),
    )
    return f"{ask}\n\n{pick(rng, COMPLEXITY_SNIPPETS)}"


def explain_code(rng: random.Random) -> str:
    name, key, limit = (
        pick(rng, ("orders", "events", "readings", "users")),
        pick(rng, ("price", "score", "age", "size")),
        rng.randint(2, 50),
    )
    snippet = (
        f"def summarise({name}, limit={limit}):\n    groups = {{}}\n    for item in {name}:\n"
        f"        if item['{key}'] < limit:\n            continue\n        groups.setdefault(item['kind'], "
        f"[]).append(item['{key}'])\n"
        f"    return {{kind: sum(values) / len(values) for kind, values in groups.items()}}"
    )
    ask = pick(
        rng,
        (
            "Explain what this function does, line by line.",
            "Review this code: what could go wrong, and how would you improve it?",
            "Add type hints and a docstring to this function, and explain your choices.",
            "Rewrite this function to be easier to read.",
        ),
    )
    return f"{ask}\n\n{snippet}"


def sql(rng: random.Random) -> str:
    schema, tasks = pick(rng, SQL_SCHEMAS)
    dialect = pick(rng, ("SQL", "PostgreSQL", "MySQL", "SQLite"))
    extra = pick(rng, ("", " Explain each clause.", " Which index would make it faster?", " Avoid subqueries."))
    return f"Given tables {schema}, write a {dialect} query that {pick(rng, tasks)}.{extra}"


def regex(rng: random.Random) -> str:
    target, language = pick(rng, REGEX_TARGETS), pick(rng, ("Python", "JavaScript", "Java", "Go"))
    return f"Write a regular expression that matches {target}, and show how to use it in {language}."


def shell(rng: random.Random) -> str:
    tool, task = pick(rng, SHELL_TASKS)
    return pick(
        rng,
        (
            f"How do I {task} with {tool}?",
            f"What {tool} command would {task.replace('my ', 'your ')}?",
            f"Using {tool}, how can I {task}?",
        ),
    )


def design(rng: random.Random) -> str:
    name, parts = pick(rng, DESIGN_DOMAINS)
    language = pick(rng, LANGUAGES)
    return f"Design a {name} class in {language} that handles {parts}. Show the class and a short usage example."


def data_task(rng: random.Random) -> str:
    tasks = pick_some(rng, DATA_TASKS, rng.randint(1, 2))
    return f"Using pandas, how do I {' and then '.join(tasks)}?"


FAMILIES = (
    write_function,
    write_function,
    explain_concept,
    debug,
    write_tests,
    translate_code,
    complexity,
    sql,
    regex,
    shell,
    design,
    data_task,
    explain_code,
)
