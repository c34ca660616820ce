#!/usr/bin/env python3
"""Derives the RFC 7919 FFDHE primes from their definition and checks that each is a safe prime.

RFC 7919 appendix A: p = 2^b - 2^{b-64} + {[2^{b-130} e] + X } * 2^64 - 1, where e is Euler's
number and X is the value the RFC lists for each group (the smallest giving a safe prime).
Prints the primes as hex, 64 digits a line, as auth/src/ffdhe.rs holds them; the test
`ffdhe_primes_are_the_rfc7919_definition` compares them. No library beyond the standard one.
"""
import random
import sys

X = {2048: 560316, 3072: 2625351, 4096: 5736041, 6144: 15705020, 8192: 10965728}


def floor_e_scaled(bits):
    """floor(e * 2^bits), from the series e = sum 1/k!, with 64 guard bits."""
    scale = 1 << (bits + 64)
    total, term, k = 0, scale, 0
    while term:
        total += term
        k += 1
        term //= k
    return total >> 64


def probably_prime(n, rounds=32):
    if n % 2 == 0:
        return n == 2
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    rng = random.Random(7919)
    for _ in range(rounds):
        a = rng.randrange(2, n - 2)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def prime(b):
    return (1 << b) - (1 << (b - 64)) + ((floor_e_scaled(b - 130) + X[b]) << 64) - 1


if __name__ == "__main__":
    for b in sorted(X):
        p = prime(b)
        assert p.bit_length() == b
        assert probably_prime(p) and probably_prime((p - 1) // 2), f"ffdhe{b} is not a safe prime"
        digits = format(p, "x").upper()
        print(f"ffdhe{b}")
        for i in range(0, len(digits), 64):
            print(digits[i : i + 64])
    sys.exit(0)
