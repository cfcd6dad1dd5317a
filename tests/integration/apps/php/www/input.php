<?php
// Reads php://input in pieces: the body streams from the router.
$in = fopen("php://input", "rb");
$ctx = hash_init("sha1");
$n = 0;
while (!feof($in)) {
    $chunk = fread($in, 65536);
    if ($chunk === false) break;
    hash_update($ctx, $chunk);
    $n += strlen($chunk);
}
echo $n, " ", hash_final($ctx);
