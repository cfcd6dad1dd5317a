<?php
$names = explode(",", $_GET["names"]);
$out = [];
foreach ($names as $n) {
    $before = ini_get($n);
    $set = @ini_set($n, "changed");
    $out[$n] = ["value" => $before, "settable" => $set !== false];
}
header("Content-Type: application/json");
echo json_encode($out);
