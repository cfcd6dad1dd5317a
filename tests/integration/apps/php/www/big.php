<?php
// n bytes of a repeating pattern, in writes of 10000.
$n = (int)($_GET["n"] ?? 0);
$piece = str_repeat("0123456789", 1000);
while ($n > 0) {
    $take = min($n, strlen($piece));
    echo substr($piece, 0, $take);
    $n -= $take;
}
