package knative

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
)

// Quantities are Kubernetes resource quantities: a decimal number (an
// optional sign, digits with at most one '.') and a suffix, binary (Ki,
// Mi, Gi, Ti, Pi, Ei), decimal (n, u, m, none, k, M, G, T, P, E) or a
// decimal exponent (e3, E-2).

// maxQuantityLen bounds the text of a quantity; longer ones are refused
// before any arithmetic.
const maxQuantityLen = 64

// maxExponent bounds a quantity's decimal exponent, so that parsing never
// builds huge numbers.
const maxExponent = 30

var binarySuffix = map[string]uint{"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}

var decimalSuffix = map[string]int{"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

// parseQuantity returns the exact value of quantity s.
func parseQuantity(s string) (*big.Rat, error) {
	if s == "" {
		return nil, fmt.Errorf("empty quantity")
	}
	if len(s) > maxQuantityLen {
		return nil, fmt.Errorf("quantity of %d characters, more than %d", len(s), maxQuantityLen)
	}
	// The number is the longest prefix of sign, digits and '.'.
	end := 0
	if s[0] == '+' || s[0] == '-' {
		end = 1
	}
	digits, dots := 0, 0
	for end < len(s) && (s[end] >= '0' && s[end] <= '9' || s[end] == '.') {
		if s[end] == '.' {
			dots++
		} else {
			digits++
		}
		end++
	}
	num, suffix := s[:end], s[end:]
	if digits == 0 || dots > 1 {
		return nil, fmt.Errorf("%q is not a quantity (a number such as 512Mi, 1Gi, 500m or 1)", s)
	}
	v, ok := new(big.Rat).SetString(num)
	if !ok {
		return nil, fmt.Errorf("%q is not a quantity (a number such as 512Mi, 1Gi, 500m or 1)", s)
	}
	if shift, ok := binarySuffix[suffix]; ok {
		return v.Mul(v, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), shift))), nil
	}
	exp, ok := decimalSuffix[suffix]
	if !ok {
		if suffix[0] != 'e' && suffix[0] != 'E' {
			return nil, fmt.Errorf("%q: unknown suffix %q (use Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E or an exponent)", s, suffix)
		}
		e, err := strconv.Atoi(suffix[1:])
		if err != nil {
			return nil, fmt.Errorf("%q: bad exponent %q", s, suffix)
		}
		exp = e
	}
	if exp < -maxExponent || exp > maxExponent {
		return nil, fmt.Errorf("%q: exponent %d out of range", s, exp)
	}
	p := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil))
	if exp < 0 {
		return v.Quo(v, p), nil
	}
	return v.Mul(v, p), nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// mebibyte is 2^20 bytes: Stratus counts memory in MiB.
var mebibyte = big.NewRat(1<<20, 1)

// parseMemory returns quantity s of bytes in MiB, rounded up to a whole
// MiB (1G is 953.67Mi: 954).
func parseMemory(s string) (int, error) {
	v, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	if v.Sign() <= 0 {
		return 0, fmt.Errorf("%q: memory must be more than 0", s)
	}
	mib := new(big.Rat).Quo(v, mebibyte)
	// Ceil of a positive rational: the integer quotient, plus one when
	// there is a remainder.
	q, r := new(big.Int).QuoRem(mib.Num(), mib.Denom(), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() || q.Int64() > math.MaxInt32 {
		return 0, fmt.Errorf("%q: memory too large", s)
	}
	return int(q.Int64()), nil
}

// parseCPU returns quantity s in cores.
func parseCPU(s string) (float64, error) {
	v, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	if v.Sign() <= 0 {
		return 0, fmt.Errorf("%q: cpu must be more than 0", s)
	}
	f, _ := v.Float64()
	if math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q: cpu too large", s)
	}
	return f, nil
}

// formatMemory writes mib MiB as a quantity: Gi when whole, else Mi.
func formatMemory(mib int) string {
	if mib%1024 == 0 {
		return strconv.Itoa(mib/1024) + "Gi"
	}
	return strconv.Itoa(mib) + "Mi"
}

// formatCPU writes c cores as a quantity: whole cores as a number,
// thousandths with m (500m), else the shortest decimal that reads back
// as c.
func formatCPU(c float64) string {
	if m := c * 1000; m == math.Trunc(m) && m > 0 && m < 1e15 {
		s := strconv.FormatInt(int64(m), 10) + "m"
		if int64(m)%1000 == 0 {
			s = strconv.FormatInt(int64(m)/1000, 10)
		}
		if back, err := parseCPU(s); err == nil && back == c {
			return s
		}
	}
	return strconv.FormatFloat(c, 'f', -1, 64)
}
