"""Draft training: one shared step (:mod:`.step`, training-time test in :mod:`.attention`),
one loop (:mod:`.trainer`), and two sources of target states — the target in the loop
(:mod:`.online`) or hidden-state dumps (:mod:`.offline`)."""
