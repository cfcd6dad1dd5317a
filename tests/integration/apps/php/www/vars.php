<?php
$files = [];
foreach ($_FILES as $k => $f) {
    $files[$k] = ["name" => $f["name"], "type" => $f["type"], "size" => $f["size"],
                  "error" => $f["error"], "tmp_dir" => dirname($f["tmp_name"]),
                  "sha1" => $f["error"] === 0 ? sha1_file($f["tmp_name"]) : null,
                  "tmp_name" => $f["tmp_name"]];
}
header("Content-Type: application/json");
echo json_encode(["get" => $_GET, "post" => $_POST, "cookie" => $_COOKIE,
                  "files" => $files, "method" => $_SERVER["REQUEST_METHOD"]]);
